"""One task's exchange with the model: ask, judge the reply, and ask again only when that can help.

What a reply can be, and what happens:

- a refusal (a `refusal` field, or finish_reason "content_filter"): a per-task error quoting it. Asking
  again with a repair prompt would pay for the same refusal.
- cut off at the token limit (finish_reason "length"): asked once more with twice the `max_tokens`
  when a limit was set (LLM_MAX_TOKENS, or the project's); otherwise, or if that is cut off too, a
  per-task error saying so and naming LLM_MAX_TOKENS. A cut-off answer is never read: a repaired
  half answer would look valid and be incomplete.
- empty (no content, and no answer in the reasoning beside it): asked once more, then an error.
- readable but invalid, or unreadable: one repair round (the reply, and what was wrong with it).
- still invalid after the repair: the controls that are valid are kept and the others dropped and
  named (a partial answer); with no valid control at all, the task fails without `result`.

The reply the answer came from is cached under the ORIGINAL request, so a re-run is free and gives
the same result, partial answers included.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..core.answer import Answer, ReadAnswer, read_answer
from ..core.config import LabelConfig
from ..core.demo import DEMO_MODEL, demo_reply
from ..core.regions import RegionInputs
from ..core.usage import Usage
from ..errors import AnswerError, CutOffError, EmptyReplyError, LLMError, RefusalError, TaskError
from ..models.client import Completion, CompletionClient, LLMRequest
from .cache import Cache
from .metrics import Metrics
from .prompts import PromptLibrary

log = logging.getLogger(__name__)

PROBLEMS = ("refused", "cut_off", "empty")


@dataclass
class Exchange:
    """A validated (possibly partial) answer, the reply it was read from, and what it all took; `reading` is
    that reply read (both ways), kept so that the same reply met again in the cache is not read again."""

    completion: Completion
    answer: Answer
    usage: Usage
    reading: ReadAnswer


def judge_reply(config: LabelConfig, completion: Completion) -> tuple[str | None, ReadAnswer | None]:
    """What makes a reply unreadable before reading it ("refused", "cut_off", "empty", or None), and the
    reply read when judging it took reading it (an empty content whose reasoning may hold the answer)."""
    if completion.refusal or completion.finish_reason == "content_filter":
        return "refused", None
    if completion.finish_reason == "length":
        return "cut_off", None
    if not completion.content.strip():
        reading = read_answer(config, completion.content, completion.reasoning)
        if isinstance(reading.error, EmptyReplyError):
            return "empty", None
        return None, reading  # an answer in the reasoning (valid or not: the repair round is for that)
    return None, None


def reply_problem(config: LabelConfig, completion: Completion) -> str | None:
    """What makes a reply unreadable before reading it: "refused", "cut_off", "empty", or None."""
    return judge_reply(config, completion)[0]


def read_settled(config: LabelConfig, completion: Completion, reading: ReadAnswer | None) -> ReadAnswer:
    """A settled reply read: the reading judging it made, or one made now."""
    return reading if reading is not None else read_answer(config, completion.content, completion.reasoning)


def problem_error(problem: str, completion: Completion, request: LLMRequest, asked_again: LLMRequest | None
                  ) -> AnswerError:
    """The per-task error that names the cause (and the setting to change) for a reply problem."""
    if problem == "refused":
        quoted = (completion.refusal or completion.content or "").strip().replace("\n", " ")[:300]
        if completion.refusal:
            return RefusalError(f"the model refused to answer: \"{quoted}\"", content=completion.content)
        said = f": \"{quoted}\"" if quoted else ""
        return RefusalError(f"the provider's content filter stopped the answer (finish_reason \"content_filter\")"
                            f"{said}", content=completion.content)
    if problem == "cut_off":
        thinking = (" (it was still thinking: the reasoning took the whole budget)"
                    if completion.reasoning and not completion.content.strip() else "")
        if asked_again is not None:
            return CutOffError(
                f"the answer was cut off at the token limit (finish_reason \"length\") twice, at max_tokens="
                f"{request.max_tokens} and again at {asked_again.max_tokens}{thinking}; raise LLM_MAX_TOKENS (or the "
                "project's max_tokens) or shorten what is asked", content=completion.content)
        return CutOffError(
            f"the answer was cut off at the model server's own token limit after {completion.completion_tokens} tokens "
            f"(finish_reason \"length\"){thinking}; set LLM_MAX_TOKENS to allow a longer answer, or check the "
            "model's context length", content=completion.content)
    return EmptyReplyError(
        "the model returned an empty reply twice (no content, no refusal, finish_reason "
        f"\"{completion.finish_reason or 'stop'}\"); its server may not support this output mode "
        "(try another LLM_OUTPUT_MODE; `llm-backend doctor` tells which one the model follows)",
        content=completion.content)


@dataclass
class DemoClient:
    """The demo model (`LLM_MODEL=demo`) as a client: answers from rules in this process, nothing sent or paid."""

    config: LabelConfig
    inputs: RegionInputs

    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        # attempts=0: no model was called, so none counts among the "model calls" anywhere (Usage.calls).
        return Completion(content=demo_reply(self.config, self.inputs), model=DEMO_MODEL, cost=0.0,
                          finish_reason="stop", attempts=0)


class Exchanger:
    """Runs the exchange of the module docstring for one request; stateless between tasks."""

    def __init__(self, client: CompletionClient, prompts: PromptLibrary, cache: Cache, metrics: Metrics) -> None:
        self.client = client
        self.prompts = prompts
        self.cache = cache
        self.metrics = metrics

    @staticmethod
    def _call(client: CompletionClient, request: LLMRequest, deadline: float | None, usage: Usage
              ) -> tuple[Completion, Usage]:
        try:
            completion = client.complete(request, deadline)
        except LLMError as exc:
            raise exc.with_usage(usage + exc.usage) from exc.__cause__
        return completion, usage + completion.usage

    def _settled(self, client: CompletionClient, config: LabelConfig, request: LLMRequest, deadline: float | None,
                 usage: Usage) -> tuple[Completion, Usage, ReadAnswer]:
        """A reply worth reading, read; a refused, cut-off or empty one is asked again only when that can help."""
        completion, usage = self._call(client, request, deadline, usage)
        problem, reading = judge_reply(config, completion)
        if problem is None:
            return completion, usage, read_settled(config, completion, reading)
        self.metrics.reply_problems.labels(problem).inc()
        again: LLMRequest | None = None
        if problem == "cut_off" and request.max_tokens:
            again = dataclasses.replace(request, max_tokens=request.max_tokens * 2)
        elif problem == "empty":
            again = request
        if again is not None:
            log.info("reply %s; asking once more%s", problem.replace("_", " "),
                     f" with max_tokens={again.max_tokens}" if again is not request else "")
            completion, usage = self._call(client, again, deadline, usage)
            problem, reading = judge_reply(config, completion)
            if problem is None:
                return completion, usage, read_settled(config, completion, reading)
            self.metrics.reply_problems.labels(problem).inc()
        error = problem_error(problem, completion, request, again if again is not request else None)
        raise error.with_usage(usage)

    def run(self, config: LabelConfig, project: str | None, request: LLMRequest, deadline: float | None,
            client: CompletionClient | None = None) -> Exchange:
        """The exchange for `request`, through `client` (default: the model client; the demo model has its own)."""
        client = client or self.client
        completion, usage, reading = self._settled(client, config, request, deadline, Usage())
        try:
            answer = reading.strict()
        except AnswerError as first_error:
            completion, reading, answer, usage = self._repair(client, config, project, request, deadline,
                                                              (completion, reading), first_error,
                                                              usage + Usage(repairs=1))
        # Stored under the ORIGINAL request: a re-run of a repaired task is free too.
        self.cache.set(request.cache_key, completion.to_cache())
        return Exchange(completion, answer, usage, reading)

    def _repair(self, client: CompletionClient, config: LabelConfig, project: str | None, request: LLMRequest,
                deadline: float | None, first: tuple[Completion, ReadAnswer], first_error: AnswerError, usage: Usage
                ) -> tuple[Completion, ReadAnswer, Answer, Usage]:
        """One repair round: show the model its reply and what was wrong with it; then keep what is valid."""
        controls = [{"name": c.name} for c in config.controls]
        repair_text = self.prompts.render(project, "repair.j2", {"error": first_error.message, "controls": controls})
        retry = request.followed_by({"role": "assistant", "content": first[0].content[:20_000]},
                                    {"role": "user", "content": repair_text})
        replies = [first]
        try:
            # The repair call is a repair, not a retry: its own retries count, its first call does not.
            repaired, usage, reading = self._settled(client, config, retry, deadline, usage)
            replies.insert(0, (repaired, reading))
            return repaired, reading, reading.strict(), usage
        except AnswerError as exc:
            second_error: TaskError = exc
            usage = exc.usage if exc.usage.calls else usage
        for reply, read in replies:  # the repaired reply first, then the original
            try:
                return reply, read, read.partial(), usage
            except AnswerError:
                continue
        if isinstance(second_error, (CutOffError, RefusalError, EmptyReplyError)):
            raise second_error.with_usage(usage)
        raise AnswerError(f"invalid answer after one repair: {second_error.message}", content=replies[0][0].content,
                          usage=usage) from None
