"""Texts longer than the model's context window: planned, asked in parts, put back together.

A task whose prompt fits the window is asked in one call, exactly as before. The window comes from
models/context.py; the prompt is counted with LiteLLM's token counter, and only when its UTF-8 size
could exceed the window at all (a token is at least a byte). Otherwise the object with the longest
text is split (core/chunks.py) into parts that fit together with everything else the prompt holds:
the templates, the answer's schema, room for few-shot examples (FEWSHOT_MAX_TOKENS; each part's own
examples are counted before it is sent) and room for the answer. Each part is one request through
the predictor's normal path (response cache, identical requests in flight shared, one repair),
asked on a pool of its own; models/limiter.py keeps LLM_CONCURRENCY calls for the whole process.

What becomes of the parts' answers is each control spec's `long_text` strategy (core/controls/
combine.py): entities are aligned inside their part, moved to whole-text offsets and merged; the
other controls' answers are combined (majority, union, median, a summary of the parts' summaries),
or with LONG_TEXT_STRATEGY=head_tail asked once about the beginning and end of the text, the prompt
saying how much was left out. NER_PASSES > 1 reads the text again in smaller parts (2/3 the size,
then 1/2, ...), so that part edges fall elsewhere, and adds the entities that overlap none found.

A part the provider refuses as too long is split in two and asked again (three times at most); a
window a provider's error names is remembered for the tasks that follow.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..core.align import AlignOptions
from ..core.chunks import MIN_FILL, Chunk, choose_cut, split_text
from ..core.controls import RegionInputs, RegionReport, spec_for
from ..core.controls.combine import SUMMARY
from ..core.regions import build_regions
from ..core.scores import control_scores
from ..core.usage import Usage
from ..errors import ContextWindowError, TaskError
from ..models.client import LLMRequest
from ..models.context import ContextWindows, LiteLLMTokenizer, Window
from ..models.pricing import Pricing
from ..settings import Settings
from .job import Answered, PredictionJob
from .outcome import LongTextReport, TaskOutcome
from .parts import (
    PART_NOTE,
    Asker,
    Part,
    PartAnswer,
    ask_part,
    merge_regions,
    only,
    place_entities,
    span_controls,
    with_text,
)
from .pools import LazyPool

log = logging.getLogger(__name__)

MARGIN = 0.9  # of the room left for text: LiteLLM's count and the provider's tokenizer may differ
MIN_PART_TOKENS = 64
MAX_SPLITS = 3  # a part refused as too long is halved at most this often
SUMMARIES_NOTE: dict[str, Any] = {"mode": "summaries"}


@dataclass(frozen=True)
class Plan:
    """How one task's text is split: which object, how many tokens of it a part holds."""

    model: str
    window: Window
    obj: str
    budget: int  # tokens of text in one part
    overlap: int  # tokens a part re-reads before its first new character
    reserve: int  # tokens kept for the answer
    overhead: int  # tokens of the prompt around the text
    tokenizer: LiteLLMTokenizer


def _utf8_size(request: LLMRequest) -> int:
    size = sum(len(str(message.get("content", "")).encode("utf-8")) + 8 for message in request.messages)
    return size + (len(str(request.response_format).encode("utf-8")) if request.response_format else 0) + 16


def restated(error: TaskError, message: str, usage: Usage) -> TaskError:
    """The same kind of error (its code decides a cascade's escalation), saying where, billing `usage`."""
    clone = copy.copy(error)
    clone.message, clone.args, clone.usage = message, (message,), usage
    return clone


class LongTexts:
    """Plans tasks against their model's window and answers the ones that do not fit, in parts."""

    def __init__(self, settings: Settings, windows: ContextWindows, pricing: Pricing, asker: Asker,
                 align: AlignOptions) -> None:
        self.settings = settings
        self.windows = windows
        self.pricing = pricing
        self.asker = asker
        self.align = align
        # Not the batch runner's pool: a task waiting there for its own parts could starve them.
        self._parts = LazyPool(settings.llm_concurrency, "llm-part")

    def pool(self) -> ThreadPoolExecutor:
        return self._parts.get()

    def reserve(self, job: PredictionJob, window: Window) -> int:
        asked = job.extra.get("max_tokens") or self.settings.llm_max_tokens
        if asked:
            return int(asked)
        reserve = min(4096, max(256, window.tokens // 4))
        return min(reserve, window.max_answer) if window.max_answer else reserve

    def plan(self, job: PredictionJob, request: LLMRequest, texts: dict[str, str], images: dict[str, Any]
             ) -> Plan | None:
        """None when the request fits its model's window (or the window is unknown): ask it whole."""
        if images or not texts:
            return None  # images take context in ways no counter knows; such tasks are not split
        window = self.windows.window(request.model)
        if window is None:
            return None
        limit = window.tokens - self.reserve(job, window)
        if _utf8_size(request) <= limit:
            return None
        tokenizer = LiteLLMTokenizer(self.pricing, request.model)
        longest = max(texts.values(), key=len)
        # Counting a whole long document costs more than its parts' calls wait: a text whose first `limit`
        # tokens do not reach its end does not fit, whatever surrounds it.
        if not tokenizer.exceeds(longest, limit) and tokenizer.count_request(request) <= limit:
            return None
        return self._plan(job, texts, window, tokenizer, request.model)

    def _plan(self, job: PredictionJob, texts: dict[str, str], window: Window, tokenizer: LiteLLMTokenizer,
              model: str) -> Plan:
        obj = max(texts, key=lambda name: len(texts[name]))
        reserve = self.reserve(job, window)
        bare_job = with_text(dataclasses.replace(job, fewshot=False), obj, "", job.config)
        overhead = tokenizer.count_request(self.asker.build_request(bare_job, {**texts, obj: ""},
                                                                    long_text=PART_NOTE))
        examples = self.settings.fewshot_max_tokens if self.asker.examples_in_use(job) else 0
        budget = int((window.tokens - reserve - overhead - examples) * MARGIN)
        if budget < MIN_PART_TOKENS:
            kept = f", few-shot examples up to {examples:,}" if examples else ""
            raise ContextWindowError(
                f"{window.describe(model)} leaves no room for the text: the prompt around it takes {overhead:,} "
                f"tokens{kept} and the answer {reserve:,}; shorten the prompt templates, lower FEWSHOT_MAX_TOKENS "
                "or LLM_MAX_TOKENS, or use a model with a larger window", window=window.tokens)
        return Plan(model, window, obj, budget, min(512, max(32, budget // 12)), reserve, overhead, tokenizer)

    def after_overflow(self, job: PredictionJob, request: LLMRequest, texts: dict[str, str],
                       images: dict[str, Any], error: ContextWindowError) -> Plan:
        """The plan after the provider refused a whole task as too long, or the error to report."""
        if images or not texts:
            raise error
        tokenizer = LiteLLMTokenizer(self.pricing, request.model)
        if error.window:
            window = self.windows.learn(request.model, error.window)
        else:
            refused = tokenizer.count_request(request)
            window = Window(max(refused // 2, 1), "half the prompt the provider refused; its error named no window")
        try:
            plan = self._plan(job, texts, window, tokenizer, request.model)
        except ContextWindowError as exc:
            raise restated(exc, f"{error.message}; {exc.message}", error.usage) from None
        text = texts[plan.obj]
        if tokenizer.fit(text, plan.budget) >= len(text):
            raise restated(error, f"{error.message}; the text already fits {window.describe(request.model)} by "
                                  "LiteLLM's count, so splitting it cannot help: the prompt around it is too long",
                           error.usage)
        return plan

    def predict(self, job: PredictionJob, texts: dict[str, str], plan: Plan) -> TaskOutcome:
        return _LongTask(self, job, texts, plan).run()


class _LongTask:
    """One task's parts: asked, re-split when refused, then merged and combined into one outcome."""

    def __init__(self, engine: LongTexts, job: PredictionJob, texts: dict[str, str], plan: Plan) -> None:
        self.engine, self.job, self.texts, self.plan = engine, job, texts, plan
        self.text = texts[plan.obj]
        self.spans = span_controls(job.config.controls)
        self.others = [control for control in job.config.controls if control not in self.spans]
        self.head_tail = engine.settings.long_text_strategy == "head_tail" and bool(self.others)
        self.pending: set[Future[PartAnswer]] = set()
        self.answers: list[PartAnswer] = []
        self.failures: list[PartAnswer] = []
        self.usage = Usage()
        self.requests = 0  # part requests, re-splits included
        self.limit = plan.window.tokens - plan.reserve

    def submit(self, part: Part) -> None:
        engine = self.engine
        self.pending.add(engine.pool().submit(ask_part, engine.asker, self.job, self.texts, self.plan.obj, part,
                                              self.limit, self.plan.tokenizer))

    def run(self) -> TaskOutcome:
        config = self.job.config
        head: Future[PartAnswer] | None = self.engine.pool().submit(self.ask_head_tail) if self.head_tail else None
        passes = self.engine.settings.ner_passes if any(c.to_name[0] == self.plan.obj for c in self.spans) else 1
        for index in range(passes):
            part_config = only(config, self.spans if self.head_tail or index else config.controls)
            if not part_config.controls:
                continue
            # Further passes read smaller parts (2/3, 1/2, ...) so their edges fall elsewhere.
            budget, overlap = self.plan.budget * 2 // (index + 2), self.plan.overlap * 2 // (index + 2)
            for chunk in split_text(self.text, self.plan.tokenizer, budget, overlap):
                self.submit(Part(chunk, part_config, index))
        self.collect()
        head_answer = head.result() if head is not None else None
        if head_answer is not None:
            self.usage += head_answer.usage
            if head_answer.error is not None:
                self.failures.append(head_answer)
        if self.failures:
            failed = min(self.failures, key=lambda answer: answer.part.chunk.start)
            assert failed.error is not None
            chunk = failed.part.chunk
            where = "its beginning and end" if failed is head_answer else \
                f"the part at characters {chunk.start:,}-{chunk.end:,} of {self.plan.obj}"
            raise restated(failed.error, f"{where}: {failed.error.message}", self.usage)
        return self.outcome(head_answer)

    def collect(self) -> None:
        while self.pending:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            for future in done:
                answer = future.result()
                self.usage += answer.usage
                self.requests += 1
                if answer.overflow and answer.part.depth < MAX_SPLITS:
                    self.split_again(answer)
                elif answer.error is not None:
                    self.failures.append(answer)
                else:
                    place_entities(answer, self.texts, self.plan.obj, self.engine.align)
                    self.answers.append(answer)

    def split_again(self, answer: PartAnswer) -> None:
        error, part = answer.error, answer.part
        if isinstance(error, ContextWindowError) and error.window:
            self.engine.windows.learn(self.plan.model, error.window)
        chunk = part.chunk
        half = max(MIN_PART_TOKENS, self.plan.tokenizer.count(self.text[chunk.start : chunk.end]) // 2)
        log.info("part %d-%d of task %s was too long for %s; asking it in smaller parts", chunk.start, chunk.end,
                 self.job.task.get("id"), self.plan.model)
        for sub in split_text(self.text, self.plan.tokenizer, half, min(self.plan.overlap, half // 4),
                              start=chunk.start, stop=chunk.end):
            self.submit(dataclasses.replace(part, chunk=sub, depth=part.depth + 1))

    def ask_head_tail(self) -> PartAnswer:
        """The other controls, asked once about the beginning and the end of the text."""
        text, tokenizer, half = self.text, self.plan.tokenizer, self.plan.budget // 2
        head_end = tokenizer.fit(text, half)
        head_end = choose_cut(text, int(head_end * MIN_FILL), head_end)
        tail_start = max(head_end, len(text) - head_end)
        tail_start = len(text) - tokenizer.fit(text[tail_start:], half)
        tail_start = choose_cut(text, tail_start, tail_start + (len(text) - tail_start) // 4)
        shown = f"{text[:head_end]}\n\n[...]\n\n{text[tail_start:]}"
        note = {"mode": "head_tail", "omitted": tail_start - head_end}
        config = only(self.job.config, self.others)
        texts = {**self.texts, self.plan.obj: shown}
        self.head_texts = texts
        self.omitted = tail_start - head_end
        part = Part(Chunk(0, len(text), 0), config)
        try:
            job = with_text(self.job, self.plan.obj, shown, config)
            request = self.engine.asker.build_request(job, texts, long_text=note)
            answered = self.engine.asker.answer(job, request, RegionInputs(texts))
        except TaskError as exc:
            return PartAnswer(part, error=exc, usage=exc.usage)
        return PartAnswer(part, answered, usage=answered.usage)

    def outcome(self, head: PartAnswer | None) -> TaskOutcome:
        config, engine = self.job.config, self.engine
        first = sorted((a for a in self.answers if a.part.pass_index == 0), key=lambda a: a.part.chunk.start)
        merged = merge_regions(self.answers, self.plan.obj, self.texts, self.spans)
        report = RegionReport()
        inputs = RegionInputs(self.texts, {}, engine.align)
        notes: dict[str, str] = {}
        head_regions: list[dict[str, Any]] = []
        if head is not None and head.answered is not None:
            values = head.answered.answer.values
            scores = control_scores(head.part.config, head.answered.completion.content,
                                    head.answered.completion.logprobs)
            head_regions = build_regions(head.part.config, values, RegionInputs(self.head_texts, {}, engine.align),
                                         scores).regions
        for control in config.controls:
            spec = spec_for(control.kind)
            # Every part's value for this control (a partial answer may lack one).
            given = [a.answered.answer.values[control.name] for a in first
                     if a.answered is not None and control.name in a.answered.answer.values]
            if control in self.spans:
                found = merged.regions[control.name]
                report.regions.extend(found)
                notes[control.name] = f"entities of {len(self.answers)} parts at whole-text offsets ({len(found)})"
            elif head is not None:
                report.regions.extend(r for r in head_regions if r["from_name"] == control.name)
                notes[control.name] = f"beginning and end ({self.omitted:,} characters left out)"
            elif not given:
                notes[control.name] = "no part answered it"
            elif spec.long_text(control) == SUMMARY:
                self.summarize(control, given, inputs, report)
                notes[control.name] = f"summary of {len(given)} parts' answers"
            else:
                combined = spec.combine(control, given)
                spec.add_regions(control, combined.value, inputs, [combined.agreement], report)
                agree = f", {combined.agreement:.0%} agree" if combined.agreement is not None else ""
                notes[control.name] = f"{spec.long_text(control)} of {len(given)} parts{agree}"
        scores = [r["score"] for r in report.regions if r.get("score") is not None]
        long_text = LongTextReport(
            characters=len(self.text), window=self.plan.window.describe(self.plan.model), parts=self.requests,
            passes=max((a.part.pass_index + 1 for a in self.answers), default=1), part_tokens=self.plan.budget,
            controls=notes, duplicates=merged.duplicates, cut_off=merged.cut_off,
            align_seconds=sum(a.align_seconds for a in self.answers) + merged.seconds)
        log.info("task %s: long text: %s", self.job.task.get("id"), long_text.describe())
        answered = [a.answered for a in self.answers if a.answered is not None]
        return TaskOutcome(
            "ok" if self.usage.calls else "cached", regions=report.regions, score=min(scores) if scores else None,
            usage=self.usage, dropped=sum(len(a.answer.dropped) for a in answered),
            unaligned=sum(a.unaligned for a in self.answers), long_text=long_text)

    def summarize(self, control: Any, answers: list[list[str]], inputs: RegionInputs, report: RegionReport,
                  depth: int = 0) -> None:
        """A summary of the parts' texts for a TextArea: one more call (more if they do not fit one)."""
        pieces = ["\n".join(answer) for answer in answers if answer]
        if len(pieces) <= 1:  # one part or none had something to say: nothing to combine
            spec_for(control.kind).add_regions(control, [line for a in answers for line in a], inputs, [], report)
            return
        text = "\n\n".join(f"[Part {index}]\n{piece}" for index, piece in enumerate(pieces, 1))
        obj, config = control.to_name[0], only(self.job.config, [control])
        texts = {obj: text}
        job = with_text(self.job, obj, text, config)
        asker = self.engine.asker
        request = asker.build_request(job, texts, long_text=SUMMARIES_NOTE)
        plan = self.engine.plan(job, request, texts, {})
        if plan is None or depth >= 2:
            answered = self.ask(job, request, texts)
            scores = control_scores(config, answered.completion.content, answered.completion.logprobs)
            spec_for(control.kind).add_regions(control, answered.answer.values[control.name], inputs,
                                               scores.get(control.name, []), report)
            return
        # Too long even for that: summarise consecutive groups of the parts first, then their summaries.
        groups = [text[c.start : c.end] for c in split_text(text, plan.tokenizer, plan.budget, 0)]
        futures = [self.engine.pool().submit(self.ask_group, job, obj, group) for group in groups]
        self.summarize(control, [future.result() for future in futures], inputs, report, depth + 1)

    def ask_group(self, job: PredictionJob, obj: str, text: str) -> list[str]:
        group_job = with_text(job, obj, text, job.config)
        texts = {obj: text}
        answered = self.ask(group_job, self.engine.asker.build_request(group_job, texts, long_text=SUMMARIES_NOTE),
                            texts)
        return list(answered.answer.values[job.config.controls[0].name])

    def ask(self, job: PredictionJob, request: LLMRequest, texts: dict[str, str]) -> Answered:
        try:
            answered = self.engine.asker.answer(job, request, RegionInputs(texts))
        except TaskError as exc:
            self.usage += exc.usage
            raise restated(exc, f"the summary of the parts' answers: {exc.message}", self.usage) from None
        self.usage += answered.usage
        return answered
