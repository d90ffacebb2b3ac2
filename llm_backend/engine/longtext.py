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

A part the provider refuses as too long is cut again, smaller by what its error says (engine/
fitter.py). Until a model has answered a part cut by our count, a task sends its first part alone
and cuts the rest after it: a refusal costs one call, not one per part in flight. A part that still
fails leaves the others' answers: the task names the characters no part read (core/gaps.py), its
score lowered by that share; it fails only when no part was answered.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..core.align import AlignOptions
from ..core.chunks import Chunk, split_after, split_text
from ..core.config import LabelConfig
from ..core.controls import RegionInputs, RegionReport, spec_for
from ..core.controls.combine import SUMMARY
from ..core.fitting import overlap_for, provider_prompt, text_budget
from ..core.gaps import gap_score
from ..core.regions import build_regions
from ..core.scores import control_scores
from ..core.usage import Usage
from ..errors import ContextWindowError, TaskError
from ..models.client import LLMRequest
from ..models.context import ContextWindows, LiteLLMTokenizer, Window
from ..models.pricing import Pricing
from ..settings import Settings
from .fitter import MAX_SPLITS, MIN_PART_TOKENS, PartFitter, Plan, unread_gaps
from .inputs import task_markup
from .job import Answered, PredictionJob
from .longplan import SUMMARIES_NOTE, PlannedCall, head_tail_view, planned_calls
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


def _utf8_size(request: LLMRequest) -> int:
    size = sum(len(str(message.get("content", "")).encode("utf-8")) + 8 for message in request.messages)
    return size + (len(str(request.response_format).encode("utf-8")) if request.response_format else 0) + 16


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
        # In our tokens: the provider may count more (a ratio learned from its errors).
        limit = int((window.tokens - self.reserve(job, window)) / (self.windows.ratio(request.model) or 1.0))
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
        budget = text_budget(window.tokens, reserve, overhead, examples, self.windows.ratio(model) or 1.0)
        if budget < MIN_PART_TOKENS:
            kept = f", few-shot examples up to {examples:,}" if examples else ""
            raise ContextWindowError(
                f"{window.describe(model)} leaves no room for the text: the prompt around it takes {overhead:,} "
                f"tokens{kept} and the answer {reserve:,}; shorten the prompt templates, lower FEWSHOT_MAX_TOKENS "
                "or LLM_MAX_TOKENS, or use a model with a larger window", window=window.tokens)
        return Plan(model, window, obj, budget, overlap_for(budget), reserve, overhead, tokenizer, examples)

    def after_overflow(self, job: PredictionJob, request: LLMRequest, texts: dict[str, str],
                       images: dict[str, Any], error: ContextWindowError) -> Plan:
        """The plan after the provider refused a whole task as too long, or the error to report."""
        if images or not texts:
            raise error
        tokenizer = LiteLLMTokenizer(self.pricing, request.model)
        if error.window:
            window = self.windows.learn(request.model, error.window)
            theirs = provider_prompt(error.prompt_tokens, error.requested_tokens, request.max_tokens)
            if theirs:
                ours = tokenizer.count_request(request)
                ratio = self.windows.learn_ratio(request.model, theirs, ours)
                log.info("task %s: refused whole as too long by %s (window %d tokens, it counted %d tokens where we "
                         "count %d: %.2f of its tokens per one of ours); asking it in parts", job.task.get("id"),
                         request.model, error.window, theirs, ours, ratio)
        else:
            refused = tokenizer.count_request(request)
            window = Window(max(refused // 2, 1), "half the prompt the provider refused; its error named no window")
        try:
            plan = self._plan(job, texts, window, tokenizer, request.model)
        except ContextWindowError as exc:
            raise exc.restated(f"{error.message}; {exc.message}", error.usage) from None
        text = texts[plan.obj]
        if tokenizer.fit(text, plan.budget) >= len(text):
            raise error.restated(f"{error.message}; the text already fits {window.describe(request.model)} by "
                                  "LiteLLM's count, so splitting it cannot help: the prompt around it is too long",
                           error.usage)
        return plan

    def planned_calls(self, job: PredictionJob, request: LLMRequest, texts: dict[str, str], images: dict[str, Any]
                      ) -> list[PlannedCall] | None:
        """The requests a run of this task sends when its text is split (None: it is asked whole)."""
        plan = self.plan(job, request, texts, images)
        return None if plan is None else planned_calls(self.settings, self.asker, job, texts, plan)

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
        self.refusals = 0  # parts the provider refused as too long
        self.resplits = 0  # refused parts cut again into smaller ones
        self.fitter = PartFitter(plan, engine.windows, self.text, job.task.get("id"),
                                 lambda tokens: engine.reserve(job, Window(tokens, "")))
        self.probed: PartAnswer | None = None

    def submit(self, part: Part) -> None:
        engine = self.engine
        self.pending.add(engine.pool().submit(ask_part, engine.asker, self.job, self.texts, self.plan.obj, part,
                                              self.fitter.our_limit, self.plan.tokenizer))

    def run(self) -> TaskOutcome:
        config = self.job.config
        head: Future[PartAnswer] | None = self.engine.pool().submit(self.ask_head_tail) if self.head_tail else None
        passes = self.engine.settings.ner_passes if any(c.to_name[0] == self.plan.obj for c in self.spans) else 1
        first_config = only(config, self.spans if self.head_tail else config.controls)
        if first_config.controls and not self.engine.windows.fitted(self.plan.model):
            self.probe(first_config)
        for index in range(passes):
            part_config = first_config if index == 0 else only(config, self.spans)
            if not part_config.controls:
                continue
            # Further passes read smaller parts (2/3, 1/2, ...) so their edges fall elsewhere.
            # The overlap follows the budget: parts cut smaller after a refusal re-read as parts planned that small.
            budget, overlap = self.fitter.budget * 2 // (index + 2), overlap_for(self.fitter.budget) * 2 // (index + 2)
            for chunk in self.cut(index, budget, overlap):
                self.submit(Part(chunk, part_config, index))
        self.collect()
        head_answer = head.result() if head is not None else None
        if head_answer is not None:
            self.usage += head_answer.usage
        if not self.answers and (head_answer is None or head_answer.error is not None):
            failed = min(self.failures or [head_answer], key=lambda answer: answer.part.chunk.start)  # type: ignore
            assert failed is not None and failed.error is not None
            chunk = failed.part.chunk
            where = "its beginning and end" if failed is head_answer else \
                f"no part was answered; the part at characters {chunk.start:,}-{chunk.end:,} of {self.plan.obj}"
            raise failed.error.restated(f"{where}: {failed.error.message}", self.usage)
        return self.outcome(head_answer)

    def cut(self, index: int, budget: int, overlap: int) -> Iterator[Chunk]:
        """A pass's parts; on the first pass, those after the probe's part when the probe asked it."""
        probed = self.probed.part.chunk if index == 0 and self.probed is not None else None
        if probed is None:
            return split_text(self.text, self.plan.tokenizer, budget, overlap)
        if budget == self.plan.budget:  # cut as a run without a probe cuts, so their answers are shared
            return (chunk for chunk in split_text(self.text, self.plan.tokenizer, budget, overlap) if chunk != probed)
        chars_per_token = (probed.end - probed.start) / max(self.plan.budget, 1)
        return split_after(self.text, self.plan.tokenizer, budget, overlap, probed, chars_per_token)

    def probe(self, config: LabelConfig) -> None:
        """The first part alone, before the others are cut: while this model has not answered a part cut by
        our count, a refusal here teaches the window and the ratio at the price of one call."""
        chunk = next(iter(split_text(self.text, self.plan.tokenizer, self.fitter.budget, self.plan.overlap)))
        answer = ask_part(self.engine.asker, self.job, self.texts, self.plan.obj, Part(chunk, config),
                          self.fitter.our_limit, self.plan.tokenizer, measure=True)
        self.usage += answer.usage
        self.requests += 1
        if answer.overflow:  # the whole text is cut again below, with what the refusal taught
            self.refusals, before = self.refusals + 1, self.fitter.budget
            learned = self.fitter.learn(answer)[0]
            if self.fitter.budget >= before:  # the error told nothing that shrinks a part: halve them
                self.fitter.budget = max(MIN_PART_TOKENS, before // 2)
            log.info("task %s: the first part was refused as too long by %s (%s); the text is cut again with "
                     "parts of up to %d tokens", self.job.task.get("id"), self.plan.model, learned, self.fitter.budget)
            return
        self.probed = answer
        self.record(answer)
        learned = self.fitter.calibrate(answer) if answer.error is None else None
        if learned:
            log.info("task %s: the first part fitted %s (%s); the other parts hold up to %d tokens",
                     self.job.task.get("id"), self.plan.model, learned, self.fitter.budget)

    def record(self, answer: PartAnswer) -> None:
        if answer.error is not None:
            self.failures.append(answer)
            return
        self.engine.windows.note_fit(self.plan.model)
        place_entities(answer, self.texts, self.plan.obj, self.engine.align)
        self.answers.append(answer)

    def collect(self) -> None:
        while self.pending:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            for future in done:
                answer = future.result()
                self.usage += answer.usage
                self.requests += 1
                self.refusals += answer.overflow
                if answer.overflow and answer.part.depth < MAX_SPLITS:
                    self.resplits += 1
                    for sub in self.fitter.pieces(answer):
                        self.submit(dataclasses.replace(answer.part, chunk=sub, depth=answer.part.depth + 1))
                else:
                    self.record(answer)

    def ask_head_tail(self) -> PartAnswer:
        """The other controls, asked once about the beginning and the end of the text."""
        shown, self.omitted = head_tail_view(self.text, self.plan.tokenizer, self.plan.budget // 2)
        note = {"mode": "head_tail", "omitted": self.omitted}
        config = only(self.job.config, self.others)
        texts = {**self.texts, self.plan.obj: shown}
        self.head_texts = texts
        part = Part(Chunk(0, len(self.text), 0), config)
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
                markup = task_markup(config, self.job.task)  # HyperText's page, Paragraphs' utterances
                spec.place(control, found, RegionInputs(self.texts, {}, engine.align, markup), report)
                notes[control.name] = f"entities of {len(self.answers)} parts at whole-text offsets ({len(found)})"
            elif head is not None and head.error is not None:
                notes[control.name] = f"not answered: the beginning and end failed ({head.error.message})"
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
        gaps = unread_gaps(self.answers, self.failures)
        long_text = LongTextReport(
            characters=len(self.text), window=self.plan.window.describe(self.plan.model), parts=self.requests,
            passes=max((a.part.pass_index + 1 for a in self.answers), default=1), part_tokens=self.fitter.budget,
            controls=notes, duplicates=merged.duplicates, cut_off=merged.cut_off,
            align_seconds=sum(a.align_seconds for a in self.answers) + merged.seconds, refusals=self.refusals,
            resplits=self.resplits,
            obj=self.plan.obj, gaps=gaps, task=str(self.job.task.get("id")))
        log.info("task %s: long text: %s", self.job.task.get("id"), long_text.describe())
        answered = [a.answered for a in self.answers if a.answered is not None]
        missing = [gap.describe(self.plan.obj) for gap in gaps]
        if head is not None and head.error is not None:
            missing.append(f"{', '.join(c.name for c in self.others)} not answered: {head.error.message}")
        return TaskOutcome(
            "ok" if self.usage.calls else "cached", regions=report.regions,
            score=gap_score(min(scores) if scores else None, len(self.text), gaps), error="; ".join(missing) or None,
            usage=self.usage, dropped=sum(len(a.answer.dropped) for a in answered),
            unaligned=sum(a.unaligned for a in self.answers), long_text=long_text,
            invalid_controls=len(self.others) if head is not None and head.error is not None else 0)

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
            raise exc.restated(f"the summary of the parts' answers: {exc.message}", self.usage) from None
        self.usage += answered.usage
        return answered
