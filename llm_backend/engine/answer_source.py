"""Where a request's validated answer comes from: the cache, an identical request in flight, or the model.

The answer source takes the exact request the request builder made (engine/request_builder.py) and returns
the answer read from its reply (`Answered`): from the response cache; from an identical request another
task has in flight (one paid call for both, engine/singleflight.py); or from the exchange with the model
(engine/exchange.py: judged, read, one repair round). The demo model answers here too, from rules.

A reply is read once per process: the reading of each reply this process has read is kept (engine/
readings.py), so a cache hit for a reply read before is not read again, and a fresh reply is read once,
however many of the exchange's steps look at it.
"""

from __future__ import annotations

from ..core.answer import ReadAnswer
from ..core.config import LabelConfig
from ..core.demo import is_demo
from ..core.regions import RegionInputs
from ..core.usage import Usage
from ..models.client import Completion, CompletionClient, LLMRequest
from .cache import Cache
from .exchange import DemoClient, Exchanger, judge_reply, problem_error, read_settled
from .job import Answered, PredictionJob
from .metrics import Metrics
from .prompts import PromptLibrary
from .readings import Readings
from .singleflight import SingleFlight


class AnswerSource:
    """Request -> validated answer: cache, single flight, the model (or the demo model), repairs."""

    def __init__(self, client: CompletionClient, prompts: PromptLibrary, cache: Cache, metrics: Metrics) -> None:
        self.client = client
        self.cache = cache
        self.exchanger = Exchanger(client, prompts, cache, metrics)
        self.readings = Readings()
        self._flights: SingleFlight[Answered] = SingleFlight()

    def answer(self, job: PredictionJob, request: LLMRequest, inputs: RegionInputs) -> Answered:
        """The validated answer to one request: from the cache, from an identical request in flight, or paid for
        (`inputs`: the texts the request shows, which the demo model answers from)."""
        cached = self.cached(job.config, request)
        if cached is not None:
            return cached
        # The demo model answers from rules in this process: nothing is sent anywhere or paid for.
        client = DemoClient(job.config, inputs) if is_demo(request.model) else None

        def ask() -> Answered:
            # Read again as the flight's leader: an identical flight that ended between the read above and now
            # has left its answer in the cache, and asking again would pay twice for it.
            again = self.cached(job.config, request)
            if again is not None:
                return again
            exchange = self.exchanger.run(job.config, job.project, request, job.deadline, client)
            completion = exchange.completion
            self.readings.keep(request.cache_key, job.config, completion.content, completion.reasoning,
                               exchange.reading)
            return Answered("ok", exchange.completion, exchange.answer, exchange.usage)

        answered, shared = self._flights.do(request.cache_key, ask)
        if shared:
            return Answered("cached", answered.completion, answered.answer, Usage())
        return answered

    def cached(self, config: LabelConfig, request: LLMRequest) -> Answered | None:
        """The cached answer to `request`, or None; a reply this process read before is not read again."""
        stored = self.cache.get(request.cache_key)
        if stored is None:
            return None
        completion = Completion.from_cache(stored)
        # Partial answers are cached too (they were returned): reading one again gives the same result.
        answer = self.readings.read(request.cache_key, config, completion.content, completion.reasoning).partial()
        return Answered("cached", completion, answer, Usage())

    def received(self, config: LabelConfig, request: LLMRequest, completion: Completion) -> ReadAnswer:
        """A completion received some other way (a provider batch) judged and read: raises AnswerError when it is
        cut off, refused or empty; its reading (strict and partial: the caller's choice) otherwise."""
        problem, reading = judge_reply(config, completion)
        if problem is not None:
            raise problem_error(problem, completion, request, None)
        reading = read_settled(config, completion, reading)
        self.readings.keep(request.cache_key, config, completion.content, completion.reasoning, reading)
        return reading
