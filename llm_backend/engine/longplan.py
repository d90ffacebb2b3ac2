"""The calls a long text's run will make, rendered before it runs (`llm-backend plan` counts them).

The same split as the run (core/chunks.py, the plan's budget and overlap, every NER pass), the same
part requests (templates, schema, few-shot examples, the part note), plus the head-and-tail call
(LONG_TEXT_STRATEGY=head_tail) or one summary call per TextArea combined by summary. What a run
learns only while running (a provider that counts more tokens than LiteLLM does, parts it refuses)
is not known here: the plan is that of a run whose parts fit the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.chunks import MIN_FILL, choose_cut, split_text
from ..core.controls import spec_for
from ..core.controls.combine import SUMMARY
from ..models.client import LLMRequest
from ..models.context import LiteLLMTokenizer
from ..settings import Settings
from .fitter import Plan
from .job import PredictionJob
from .parts import PART_NOTE, Asker, only, span_controls, with_text

SUMMARIES_NOTE: dict[str, Any] = {"mode": "summaries"}


@dataclass(frozen=True)
class PlannedCall:
    request: LLMRequest
    text: str  # the text the request shows (a typical answer is sized from it)
    kind: str = "part"  # part (of the text, any pass) | combine (head-and-tail, or a summary of the parts)
    job: PredictionJob | None = None  # a part's job and texts: what `plan --sample-parts` asks it with
    texts: dict[str, str] | None = None


def head_tail_view(text: str, tokenizer: LiteLLMTokenizer, half: int) -> tuple[str, int]:
    """The beginning and the end of `text`, about `half` tokens each, cut on boundaries; and how many
    characters of its middle are left out."""
    head_end = tokenizer.fit(text, half)
    head_end = choose_cut(text, int(head_end * MIN_FILL), head_end)
    tail_start = max(head_end, len(text) - head_end)
    tail_start = len(text) - tokenizer.fit(text[tail_start:], half)
    tail_start = choose_cut(text, tail_start, tail_start + (len(text) - tail_start) // 4)
    return f"{text[:head_end]}\n\n[...]\n\n{text[tail_start:]}", tail_start - head_end


def _typical(control: Any, text: str) -> str:
    value = spec_for(control.kind).typical_answer(control, text)
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def planned_calls(settings: Settings, asker: Asker, job: PredictionJob, texts: dict[str, str], plan: Plan
                  ) -> list[PlannedCall]:
    """Every request a run of this long task sends when no part is refused, in the order it sends them."""
    config, obj, text = job.config, plan.obj, texts[plan.obj]
    spans = span_controls(config.controls)
    others = [control for control in config.controls if control not in spans]
    head_tail = settings.long_text_strategy == "head_tail" and bool(others)
    passes = settings.ner_passes if any(c.to_name[0] == obj for c in spans) else 1
    first = only(config, spans if head_tail else config.controls)
    calls: list[PlannedCall] = []
    pieces: list[str] = []
    for index in range(passes):
        part_config = first if index == 0 else only(config, spans)
        if not part_config.controls:
            continue
        budget, overlap = plan.budget * 2 // (index + 2), plan.overlap * 2 // (index + 2)
        for chunk in split_text(text, plan.tokenizer, budget, overlap):
            piece = text[chunk.start : chunk.end]
            pieces += [piece] if index == 0 else []
            part_job, part_texts = with_text(job, obj, piece, part_config), {**texts, obj: piece}
            request = asker.build_request(part_job, part_texts, long_text=PART_NOTE)
            calls.append(PlannedCall(request, piece, "part", part_job, part_texts))
    if head_tail:
        shown, omitted = head_tail_view(text, plan.tokenizer, plan.budget // 2)
        asked = only(config, others)
        request = asker.build_request(with_text(job, obj, shown, asked), {**texts, obj: shown},
                                      long_text={"mode": "head_tail", "omitted": omitted})
        return [*calls, PlannedCall(request, shown, "combine")]
    for control in others:
        if spec_for(control.kind).long_text(control) != SUMMARY or len(pieces) < 2:
            continue
        # The run summarises the parts' answers in one more call; sized here with typical answers.
        summary = "\n\n".join(f"[Part {i}]\n{_typical(control, piece)}" for i, piece in enumerate(pieces, 1))
        target = control.to_name[0]
        request = asker.build_request(with_text(job, target, summary, only(config, [control])), {target: summary},
                                      long_text=SUMMARIES_NOTE)
        calls.append(PlannedCall(request, summary, "combine"))
    return calls
