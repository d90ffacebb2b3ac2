"""What happened to a task, and to a batch of them.

`TaskOutcome` is the one result type of the engine: regions (None when the task failed), the
`Usage` of the calls it made, what was dropped, and for a cascade each step it went through.
`BatchSummary` sums outcomes for the log line, the CLI summary and reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.align import ALIGNMENT_META
from ..core.gaps import Gap
from ..core.usage import Usage
from .metrics import Metrics


@dataclass(frozen=True)
class CascadeStep:
    """One model's part in one task of a cascade."""

    model: str
    status: str  # ok | cached | failed
    score: float | None
    escalated: str | None  # why the next model was asked (see cascade.REASONS); None: the cascade stopped here
    used: bool  # this step's answer is the one returned
    usage: Usage
    regions: list[dict[str, Any]] | None = None  # this step's own answer, to score each step on its own
    error: str | None = None


@dataclass(frozen=True)
class LongTextReport:
    """How a text longer than the model's context window was answered (engine/longtext.py)."""

    characters: int  # of the text that was split
    window: str  # e.g. "openai/x's context window (8,192 tokens, from LLM_CONTEXT_TOKENS)"
    parts: int  # requests over parts of the text, every pass and re-split included
    passes: int
    part_tokens: int  # the text budget of one part
    controls: dict[str, str] = field(default_factory=dict)  # control name -> what answered it
    duplicates: int = 0  # entities two overlapping parts found, kept once
    cut_off: int = 0  # pieces of entities at a part's cut edge, dropped (the next part read them whole)
    align_seconds: float = 0.0  # aligning the parts' quotes and merging them
    refusals: int = 0  # part requests the provider refused as too long
    resplits: int = 0  # refused parts cut again (a refused first part re-cuts the whole text instead)
    obj: str = ""  # the object whose text was split
    gaps: list[Gap] = field(default_factory=list)  # characters no part read: a part failed there
    task: str | None = None  # the task's id, to name it where the gaps are shown

    def describe(self) -> str:
        controls = "; ".join(f"{name}: {how}" for name, how in self.controls.items())
        unread = "".join(f"; {gap.describe(self.obj)}" for gap in self.gaps)
        return (f"{self.characters:,} characters over {self.window}: {self.parts} parts of up to "
                f"{self.part_tokens:,} tokens ({self.refusals} refused as too long, {self.resplits} cut again), "
                f"{self.passes} NER pass(es); "
                f"{controls}; {self.duplicates} duplicate and {self.cut_off} cut-off entities merged, "
                f"aligned in {self.align_seconds * 1000:.0f} ms{unread}")


@dataclass
class TaskOutcome:
    # ok | cached | failed | timeout (not finished by the deadline: it runs on) | delivered (a job's task that
    # Label Studio got another way while the request ran)
    status: str
    regions: list[dict[str, Any]] | None = None
    score: float | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    dropped: int = 0
    unaligned: int = 0
    left_out: dict[str, int] = field(default_factory=dict)  # valid items that became no region, by reason
    model: str | None = None  # the model name asked (LLM_MODEL, a project's model, a cascade step)
    error_code: str | None = None  # the LLMBackendError code of a failure, e.g. invalid_answer
    invalid_controls: int = 0  # controls left out of a partial answer (`error` says which and why)
    repairs: tuple[str, ...] = ()  # what reading the reply took (core/reading.py REPAIRS)
    cascade: list[CascadeStep] = field(default_factory=list)  # every step asked, when a cascade answered
    project: str | None = None  # the Label Studio project the task belongs to, for per-project metrics
    long_text: LongTextReport | None = None  # set when the text was split to fit the model's context
    signal: str | None = None  # where the scores came from: logprobs | samples | off (engine/confidence.py)
    cause: str | None = None  # core.causes key of a failure known before classifying it (a halted job's task)

    @property
    def partial(self) -> bool:
        """Answered in part: some controls left out, or some of a long text not read."""
        return self.invalid_controls > 0 or self.unread_characters > 0

    @property
    def unread_characters(self) -> int:
        return sum(gap.end - gap.start for gap in self.long_text.gaps) if self.long_text else 0

    def facts(self) -> dict[str, Any]:
        """What a job's record keeps of the outcome besides its item and usage, so that the job path's batch
        summary counts what the direct path's does: controls left out, text not read, repairs, score signal."""
        return {"invalid_controls": self.invalid_controls, "repairs": list(self.repairs), "signal": self.signal,
                "dropped": self.dropped, "unaligned": self.unaligned,
                "long_text": asdict(self.long_text) if self.long_text else None}

    @staticmethod
    def from_facts(facts: dict[str, Any] | None) -> dict[str, Any]:
        """The TaskOutcome fields that `facts()` kept (none from a record written before they were kept)."""
        if not facts:
            return {}
        long_text = facts.get("long_text")
        report = LongTextReport(**{**long_text, "gaps": [Gap(**gap) for gap in long_text.get("gaps") or ()]}) \
            if long_text else None
        return {"invalid_controls": int(facts.get("invalid_controls") or 0),
                "repairs": tuple(facts.get("repairs") or ()), "signal": facts.get("signal"),
                "dropped": int(facts.get("dropped") or 0),
                "unaligned": int(facts.get("unaligned") or 0), "long_text": report}

    def to_result(self, model_version: str) -> dict[str, Any]:
        """The item Label Studio expects; failures carry no `result` so LS asks again later.

        A partial answer has both: its regions, and in `error` the controls left out and why (Label
        Studio 1.23.2 ignores keys it does not know in a result item)."""
        if self.regions is None:
            return {"model_version": model_version, "error": self.error or self.status}
        item: dict[str, Any] = {"result": self.regions, "model_version": model_version}
        if self.score is not None:
            item["score"] = self.score
        if self.error:
            item["error"] = self.error
        return item


def count_outcome(metrics: Metrics, outcome: TaskOutcome) -> None:
    """Add one finished task to the Prometheus counters (once per task, whatever answered it)."""
    metrics.tasks.labels(outcome.status).inc()
    count_usage(metrics, outcome.project, outcome.usage)
    if outcome.dropped:
        metrics.dropped.labels("invalid_value").inc(outcome.dropped)
    if outcome.unaligned:
        metrics.dropped.labels("unaligned_entity").inc(outcome.unaligned)
    for reason, count in outcome.left_out.items():  # RegionReport.left_out: an empty shape, an unplaced span
        metrics.dropped.labels(reason).inc(count)
    for region in outcome.regions or ():
        if kind := (region.get("meta") or {}).get(ALIGNMENT_META):
            metrics.aligned_spans.labels(kind).inc()
    if outcome.long_text is not None:
        metrics.long_texts.inc()
        metrics.long_text_parts.inc(outcome.long_text.parts)
        metrics.long_text_refusals.inc(outcome.long_text.refusals)
        for gap in outcome.long_text.gaps:
            metrics.unread(outcome.project, outcome.long_text.task, outcome.long_text.obj, gap)
    if outcome.invalid_controls:
        metrics.dropped.labels("invalid_control").inc(outcome.invalid_controls)
        metrics.partial_answers.inc()
    if outcome.status == "ok":  # a cached answer was counted when it was read the first time
        for repair in outcome.repairs:
            metrics.reply_repairs.labels(repair).inc()


def count_usage(metrics: Metrics, project: str | None, usage: Usage) -> None:
    """Add calls, tokens and cost to the counters, globally and for the project."""
    metrics.llm_calls.inc(usage.calls)
    metrics.retries.inc(usage.retries)
    metrics.repairs.inc(usage.repairs)
    metrics.tokens.labels("prompt").inc(usage.prompt_tokens)
    metrics.tokens.labels("completion").inc(usage.completion_tokens)
    if usage.cost:
        metrics.cost.inc(usage.cost)
    metrics.count_project(project, usage)


@dataclass
class BatchSummary:
    tasks: int
    ok: int
    cached: int
    failed: int
    timeout: int
    usage: Usage
    dropped: int
    unaligned: int
    seconds: float
    project: str | None = None  # when every task belongs to one project
    partial: int = 0  # tasks answered with some controls left out, or some of a long text unread
    unread: int = 0  # of those, tasks with characters of a long text no part read
    unread_characters: int = 0
    reply_repairs: int = 0  # tasks whose reply needed a repair to be read (core/reading.py REPAIRS)
    signals: dict[str, int] = field(default_factory=dict)  # tasks by where their scores came from

    @classmethod
    def of(cls, outcomes: list[TaskOutcome], seconds: float) -> BatchSummary:
        projects = {o.project for o in outcomes}
        return cls(
            tasks=len(outcomes),
            ok=sum(o.status == "ok" for o in outcomes),
            cached=sum(o.status == "cached" for o in outcomes),
            failed=sum(o.status == "failed" for o in outcomes),
            timeout=sum(o.status == "timeout" for o in outcomes),
            usage=Usage.total(o.usage for o in outcomes),
            dropped=sum(o.dropped for o in outcomes),
            unaligned=sum(o.unaligned for o in outcomes),
            seconds=seconds,
            project=projects.pop() if len(projects) == 1 else None,
            partial=sum(o.partial for o in outcomes),
            unread=sum(o.unread_characters > 0 for o in outcomes),
            unread_characters=sum(o.unread_characters for o in outcomes),
            reply_repairs=sum(bool(o.repairs) for o in outcomes),
            signals=signal_counts(outcomes),
        )

    def log_line(self) -> str:
        u = self.usage
        where = f" project {self.project}:" if self.project else ""
        return (
            f"predict:{where} {self.tasks} tasks in {self.seconds:.2f} s: ok={self.ok} cached={self.cached} "
            f"failed={self.failed} timed_out={self.timeout} llm_calls={u.calls} retries={u.retries} "
            f"repairs={u.repairs} tokens={u.prompt_tokens}+{u.completion_tokens} cost={u.cost_text()} "
            f"dropped={self.dropped} unaligned={self.unaligned} partial={self.partial} "
            f"unread={self.unread} ({self.unread_characters} characters) reply_repairs={self.reply_repairs} "
            f"signals={','.join(f'{name}:{count}' for name, count in sorted(self.signals.items())) or '-'}"
        )


def signal_counts(outcomes: list[TaskOutcome]) -> dict[str, int]:
    """Answered tasks by where their scores came from (logprobs, samples, off)."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.signal and outcome.regions is not None:
            counts[outcome.signal] = counts.get(outcome.signal, 0) + 1
    return counts
