"""Prometheus counters, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..core.gaps import Gap
from ..core.usage import Usage

NO_PROJECT = "none"  # the project label of work outside a Label Studio project (offline files)
UNREAD_SHOWN = 20  # the latest unread ranges of long texts kept (series in /metrics, rows on the status page)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks = Counter("llm_backend_tasks", "Tasks predicted, by outcome", ["status"], registry=r)
        self.llm_calls = Counter("llm_backend_llm_calls", "Model calls made, retries and repairs included", registry=r)
        self.retries = Counter("llm_backend_llm_retries", "Model calls retried after a transient failure", registry=r)
        self.repairs = Counter("llm_backend_repairs", "Re-asks after an invalid answer", registry=r)
        self.tokens = Counter("llm_backend_llm_tokens", "Tokens billed", ["kind"], registry=r)
        self.cost = Counter("llm_backend_llm_cost_usd", "Cost in USD where LiteLLM knows the price", registry=r)
        self.dropped = Counter("llm_backend_dropped", "Answer items dropped", ["reason"], registry=r)
        self.aligned_spans = Counter("llm_backend_aligned_spans",
                                     "Entity spans placed in the text, by how the quote matched it "
                                     "(exact, case_insensitive, normalised, fuzzy)", ["kind"], registry=r)
        self.long_texts = Counter("llm_backend_long_texts", "Tasks whose text was split to fit the context window",
                                  registry=r)
        self.long_text_parts = Counter("llm_backend_long_text_parts", "Requests over parts of split texts",
                                       registry=r)
        self.long_text_refusals = Counter("llm_backend_long_text_refusals",
                                          "Parts of split texts the provider refused as too long (each cut again)",
                                          registry=r)
        self.unread_characters = Counter("llm_backend_long_text_unread_characters",
                                         "Characters of long texts no part read (a part failed there)", registry=r)
        # One series per range, for the latest UNREAD_SHOWN: which task, which characters, and why.
        self.unread_ranges = Gauge("llm_backend_long_text_unread_range",
                                   "Characters a part of a long text failed to read (value: how many), latest "
                                   f"{UNREAD_SHOWN}", ["project", "task", "object", "start", "end", "reason"],
                                   registry=r)
        self.recent_unread: deque[dict[str, Any]] = deque()
        self._unread_lock = threading.Lock()
        self.partial_answers = Counter("llm_backend_partial_answers",
                                       "Tasks answered with some controls left out (invalid after the repair round)",
                                       registry=r)
        self.reply_repairs = Counter("llm_backend_reply_repairs", "Replies read only after a repair of their text",
                                     ["repair"], registry=r)
        self.reply_problems = Counter("llm_backend_reply_problems", "Replies refused, cut off or empty",
                                      ["problem"], registry=r)
        self.requests = Counter("llm_backend_http_requests", "Protocol requests", ["route", "status"], registry=r)
        # Per Label Studio project: what it consumed and cost. A call whose price is unknown adds to
        # unpriced_calls, not to cost, so a dashboard can tell "free" from "not known".
        self.project_tokens = Counter("llm_backend_project_tokens", "Tokens billed, per project", ["project", "kind"],
                                      registry=r)
        self.project_cost = Counter("llm_backend_project_cost_usd", "Cost in USD of priced calls, per project",
                                    ["project"], registry=r)
        self.project_unpriced = Counter("llm_backend_project_unpriced_calls",
                                        "Model calls whose price is unknown (their cost is not in the cost counter)",
                                        ["project"], registry=r)
        self.predict_seconds = Histogram(
            "llm_backend_predict_seconds", "Wall time of /predict requests", registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 40, 60, 90, 120),
        )

    def count_project(self, project: str | None, usage: Usage) -> None:
        label = project or NO_PROJECT
        self.project_tokens.labels(label, "prompt").inc(usage.prompt_tokens)
        self.project_tokens.labels(label, "completion").inc(usage.completion_tokens)
        if usage.cost is None:
            self.project_unpriced.labels(label).inc(usage.calls)
        else:
            self.project_cost.labels(label).inc(usage.cost)

    def unread(self, project: str | None, task: str | None, obj: str, gap: Gap) -> None:
        """A range of a long text no part read: counted, and kept among the latest shown."""
        self.unread_characters.inc(gap.end - gap.start)
        row = {"project": project or NO_PROJECT, "task": task or "", "object": obj, "start": gap.start,
               "end": gap.end, "reason": gap.reason, "at": time.time()}
        labels = (row["project"], row["task"], obj, str(gap.start), str(gap.end), gap.reason[:120])
        with self._unread_lock:
            self.recent_unread.append({**row, "labels": labels})
            self.unread_ranges.labels(*labels).set(gap.end - gap.start)
            while len(self.recent_unread) > UNREAD_SHOWN:
                old = self.recent_unread.popleft()["labels"]
                if not any(item["labels"] == old for item in self.recent_unread):
                    self.unread_ranges.remove(*old)

    def unread_rows(self) -> list[dict[str, Any]]:
        """The latest unread ranges, newest first (the status page)."""
        with self._unread_lock:
            return [{k: v for k, v in row.items() if k != "labels"} for row in reversed(self.recent_unread)]

    def render(self) -> bytes:
        return generate_latest(self.registry)
