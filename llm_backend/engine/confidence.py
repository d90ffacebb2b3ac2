"""A prediction's confidence: where its raw scores come from, and what they mean once calibrated.

Signals (`CONFIDENCE`):

- `logprobs`: the token log-probabilities of the reply (core/scores.py), where the provider returns them;
- `samples`: k more answers to the same request at `CONFIDENCE_TEMPERATURE`, asked with `n` in one call
  where the server honours it and one call each where it does not (learned from its first reply); a
  decision's score is the share of samples that made the same decision (an entity: the share that
  quoted it with the same label). The samples are one cached request: a re-run pays nothing;
- `off`: no confidence (NER regions keep their alignment quality, as without log-probabilities);
- `auto` (default): log-probabilities when the reply has them, else samples when CONFIDENCE_SAMPLES is
  set, else none.

Calibration (`llm-backend calibrate`, core/calibration.py) is stored per project for one
model_version and one signal; `calibrate_outcome` turns a task's raw region scores into calibrated
ones (the raw one kept as `raw_score`), and the task's `score` into the lowest calibrated control
score. Every answer, cached ones too, is re-scored this way without a model call.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.answer import Answer
from ..core.calibration import Calibration
from ..core.config import LabelConfig
from ..core.controls import spec_for
from ..core.scores import control_scores
from ..core.usage import Usage
from ..errors import LLMBackendError
from ..models.client import Completion, CompletionClient, LLMRequest
from ..settings import Settings
from .cache import Cache
from .outcome import TaskOutcome
from .projects import ProjectStore
from .readings import Readings

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 5
Scores = dict[str, list[float | None]]


def agreement_scores(config: LabelConfig, answer: Answer, samples: Sequence[Answer | None]) -> Scores:
    """Per control, the share of samples that agree with the answer (`None` samples could not be read); what
    agreeing means is the control's spec's (`ControlSpec.sample_scores`)."""
    if not samples:
        return {}
    scores: Scores = {}
    for control in config.controls:
        if control.name not in answer.values:
            continue
        theirs = [s.values.get(control.name) if s is not None else None for s in samples]
        scores[control.name] = spec_for(control.kind).sample_scores(control, answer.values[control.name], theirs)
    return scores


def sample_count(settings: Settings, asks_logprobs: bool) -> int:
    """Samples a task costs beside its answer (0: none), as `plan` counts them: samples are asked when
    CONFIDENCE=samples, or with auto when CONFIDENCE_SAMPLES is set and no log-probabilities are asked for
    (a provider that is asked and returns none is only known after the call)."""
    if settings.confidence == "samples" or (settings.confidence == "auto" and settings.confidence_samples
                                            and not asks_logprobs):
        return settings.confidence_samples or DEFAULT_SAMPLES
    return 0


class Confidence:
    """The confidence signal of each answer, and the project's calibration applied to it."""

    def __init__(self, settings: Settings, client: CompletionClient | None, cache: Cache,
                 projects: ProjectStore | None = None, ttl: float = 5.0) -> None:
        self.settings = settings
        self.client = client
        self.cache = cache
        self.projects = projects
        self.ttl = ttl  # seconds a project's calibration is reused before the store is read again
        self._calibrations: dict[str, tuple[float, Calibration | None]] = {}
        self._no_n: set[str] = set()  # models whose server answered one choice when asked for n
        self._lock = threading.Lock()
        self.readings = Readings()  # a cached request's samples are read once per process, as answers are

    @property
    def samples(self) -> int:
        return self.settings.confidence_samples or DEFAULT_SAMPLES

    def signal(self, completion: Completion, demo: bool = False) -> str:
        mode = self.settings.confidence
        if mode == "auto":
            if completion.logprobs:
                return "logprobs"
            return "samples" if self.settings.confidence_samples and not demo else "off"
        return "off" if mode == "samples" and demo else mode

    def scores(self, job_config: LabelConfig, request: LLMRequest | None, answer: Answer, completion: Completion,
               deadline: float | None, demo: bool = False) -> tuple[Scores, str, Usage]:
        """(raw scores by control, the signal they come from, the usage of any sample calls)."""
        signal = self.signal(completion, demo)
        if signal == "logprobs":
            # Token scores only where the object's place in the content is known (not inside a repaired text).
            found = (control_scores(job_config, completion.content, completion.logprobs, answer.start)
                     if answer.start is not None else {})
            return found, signal, Usage()
        if signal == "samples" and request is not None and self.client is not None:
            contents, usage = self._sample(request, deadline)
            key = self.sample_request(request).cache_key
            answers = [self._read(f"{key}#{index}", job_config, content) for index, content in enumerate(contents)]
            return agreement_scores(job_config, answer, answers), signal, usage
        return {}, "off", Usage()

    def _read(self, key: str, config: LabelConfig, content: str) -> Answer | None:
        try:
            return self.readings.read(key, config, content).partial()
        except LLMBackendError:
            return None  # a sample that cannot be read agrees with nothing

    def sample_request(self, request: LLMRequest) -> LLMRequest:
        return dataclasses.replace(request, temperature=self.settings.confidence_temperature, logprobs=False,
                                   n=self.samples)

    def _sample(self, request: LLMRequest, deadline: float | None) -> tuple[list[str], Usage]:
        """k sampled contents: from the cache, or from one call with `n`, topped up with single calls."""
        sampled = self.sample_request(request)
        cached = self.cache.get(sampled.cache_key)
        if cached is not None:
            completion = Completion.from_cache(cached)
            return [completion.content, *completion.alternatives], Usage()
        assert self.client is not None
        usage = Usage()
        contents: list[str] = []
        first = self.client.complete(sampled if request.model not in self._no_n else
                                     dataclasses.replace(sampled, n=1), deadline)
        usage += first.usage
        contents = [first.content, *first.alternatives]
        if len(contents) < sampled.n and request.model not in self._no_n:
            log.info("%s answered %d choice(s) when asked for n=%d: confidence samples are separate calls from now on",
                     request.model, len(contents), sampled.n)
            self._no_n.add(request.model)
        while len(contents) < sampled.n:
            more = self.client.complete(dataclasses.replace(sampled, n=1), deadline)
            usage += more.usage
            contents.append(more.content)
        contents = contents[:sampled.n]
        self.cache.set(sampled.cache_key, Completion(contents[0], first.model, usage.prompt_tokens,
                                                     usage.completion_tokens, usage.cost,
                                                     alternatives=tuple(contents[1:])).to_cache())
        return contents, usage

    # ---- calibration

    def calibration(self, project: str | None) -> Calibration | None:
        """The project's stored calibration (re-read from the shared store at most every `ttl` seconds)."""
        if project is None or self.projects is None:
            return None
        now = time.monotonic()
        with self._lock:
            known = self._calibrations.get(project)
        if known is not None and now - known[0] < self.ttl:
            return known[1]
        state = self.projects.get(project)
        raw = getattr(state, "calibration", None) if state is not None else None
        calibration = Calibration.from_dict(raw) if raw else None
        with self._lock:
            self._calibrations[project] = (now, calibration)
        return calibration


def calibrate_task(confidence: Confidence, project: str | None, outcome: TaskOutcome,
                   version: Callable[[], str]) -> None:
    """Serve calibrated scores when the project has a calibration of this model_version (`version`, asked only
    then) and this answer's signal; raw scores otherwise (no calibration yet, or a stale one)."""
    calibration = confidence.calibration(project) if outcome.regions is not None else None
    if calibration is not None and calibration.model_version == version():
        calibrate_outcome(outcome, calibration)


def calibrate_outcome(outcome: TaskOutcome, calibration: Calibration) -> bool:
    """Calibrated region scores (the raw one kept as `raw_score`) and task score; False when it does not apply."""
    if outcome.regions is None or outcome.signal != calibration.signal:
        return False
    lowest: dict[str, float] = {}
    for region in outcome.regions:
        name, raw = region.get("from_name"), region.get("score")
        if not isinstance(name, str) or not isinstance(raw, (int, float)):
            continue
        calibrated = calibration.score(name, float(raw))
        if calibrated is None:
            continue
        region["raw_score"], region["score"] = raw, calibrated
        lowest[name] = min(lowest.get(name, 1.0), calibrated)
    scored = [r["score"] for r in outcome.regions if isinstance(r.get("score"), (int, float))]
    outcome.score = min(scored) if scored else None
    return bool(lowest)


def calibration_status(calibration: dict[str, Any] | None, model_version: str | None) -> dict[str, Any] | None:
    """What the status page and `doctor` show of a project's calibration: per control its ECE and reliability
    bins, whether it is stale (fitted for another model_version: raw scores are served), and the coverage
    at the threshold `accept` last certified."""
    if not calibration:
        return None
    fitted = Calibration.from_dict(calibration)
    accept = calibration.get("accept") or None
    return {
        "model_version": fitted.model_version,
        "signal": fitted.signal,
        "created": fitted.created,
        "stale": model_version is not None and fitted.model_version != model_version,
        "controls": {name: {"n": c.n, "n_holdout": c.n_holdout, "ece_before": c.ece_before, "ece_after": c.ece_after,
                            "accuracy": c.accuracy, "bins": [dataclasses.asdict(b) for b in c.bins]}
                     for name, c in fitted.controls.items()},
        "skipped": fitted.skipped,
        "accept": accept,
        "coverage": (accept["accepted"] / accept["candidates"]
                     if accept and accept.get("candidates") and accept.get("threshold") is not None else None),
    }
