"""`doctor`'s output-mode probe: a small real label config, asked in each output mode.

Each mode (`schema`, `json`, `prompt`) gets one real request, built by the same predictor, prompts
and reader as a prediction, for one task of a config with a Choices and a Labels control. What the
reply was (a valid answer read as sent, one that needed repairs, or none and why) tells which modes
the model follows and which LLM_OUTPUT_MODE to set: the first mode followed without repairs, else the
first followed at all, in the order schema, json, prompt (the schema is the strongest guarantee).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..core.config import parse_label_config
from ..engine.exchange import judge_reply, problem_error, read_settled
from ..engine.inputs import task_texts
from ..engine.job import PredictionJob
from ..engine.prompts import PromptLibrary
from ..engine.request_builder import RequestBuilder
from ..errors import AnswerError, LLMBackendError
from ..models.client import CompletionClient
from ..settings import Settings

MODES = ("schema", "json", "prompt")
PROBE_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Labels name="entities" toName="text"><Label value="Person"/><Label value="City"/></Labels>
</View>"""
PROBE_TASK = {"id": "doctor-probe", "data": {"text": "Ada Lovelace loved her years in London: a wonderful time."}}


@dataclass(frozen=True)
class ModeResult:
    mode: str
    followed: bool  # a valid answer for the probe's config came back
    repairs: tuple[str, ...] = ()  # what reading it took (core/reading.py)
    problem: str = ""  # why not, when not followed

    @property
    def detail(self) -> str:
        if not self.followed:
            return f"not followed: {self.problem}"
        if self.repairs:
            return "followed, but reading the reply took repairs: " + ", ".join(self.repairs)
        return "followed: a valid answer, read as sent"


def probe_mode(settings: Settings, client: CompletionClient, mode: str,
               routes: dict[str, tuple[str, ...]] | None = None) -> ModeResult:
    config = parse_label_config(PROBE_CONFIG)
    in_mode = settings.model_copy(update={"llm_output_mode": mode, "fewshot_k": 0})
    builder = RequestBuilder(in_mode, PromptLibrary(settings.prompts_dir), routes=routes)
    request = builder.build_request(PredictionJob(config, None, PROBE_TASK, fewshot=False),
                                    task_texts(config, PROBE_TASK))
    try:
        completion = client.complete(request)
        problem, reading = judge_reply(config, completion)
        if problem is not None:
            return ModeResult(mode, False, problem=problem_error(problem, completion, request, None).message)
        answer = read_settled(config, completion, reading).strict()
    except (AnswerError, LLMBackendError) as exc:
        return ModeResult(mode, False, problem=exc.message)
    return ModeResult(mode, True, answer.repairs)


def recommend(results: list[ModeResult]) -> ModeResult | None:
    clean = [result for result in results if result.followed and not result.repairs]
    followed = [result for result in results if result.followed]
    return (clean or followed or [None])[0]


def probe_modes(settings: Settings, client: CompletionClient,
                routes: dict[str, tuple[str, ...]] | None = None) -> Iterator[ModeResult]:
    for mode in MODES:
        yield probe_mode(settings, client, mode, routes)
