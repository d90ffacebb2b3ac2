"""A model that is right with a known probability per task, and overconfident about it.

The world: each task (named in its text by a key such as ``item-17``) has a true label and a hidden
probability ``p`` that the model gets it right. The test LLM server's noisy mode answers a
temperature-0 request with the true label with probability ``p`` (decided once per task, so the
same request always gets the same answer) and another label otherwise; a request at a temperature
above 0 draws each of its ``n`` samples afresh the same way. The token log-probability it reports for
the label is ``overconfident(p)``, a distortion that pushes ``p`` towards 1 (what models do): the
backend's calibration has to learn the way back. With ``logprobs=False`` it reports none (a local
server); with ``n=False`` it ignores ``n`` and answers one choice (a server without it).

`simulate` draws the same world without any server, for the statistical tests and the benchmark.
Standard library only: the server runs wherever the tests run.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KEY = re.compile(r"item-\d+")


def overconfident(p: float, sharpness: float = 2.5, shift: float = 1.5) -> float:
    """What the model claims when it is right with probability p: logit scaled up and shifted."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    logit = math.log(p / (1 - p)) * sharpness + shift
    return 1 / (1 + math.exp(-logit))


def hidden_probability(rng: random.Random, alpha: float = 8.0, beta: float = 1.5) -> float:
    """A task's chance of being answered right: mostly high, with a long tail of hard tasks."""
    return rng.betavariate(alpha, beta)


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Item:
    truth: str
    p: float


@dataclass
class NoisyModel:
    control: str
    labels: list[str]
    items: dict[str, Item]
    seed: int = 0
    logprobs: bool = True
    n: bool = True
    _asked: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # sampling calls per task
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or any(item.truth not in self.labels for item in self.items.values()):
            raise ValueError("noisy model: at least two labels, and every task's truth among them")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoisyModel:
        unknown = set(data) - {"control", "labels", "items", "seed", "logprobs", "n"}
        if unknown or not isinstance(data.get("items"), Mapping):
            raise ValueError('expected {"control": str, "labels": [str], "items": {key: {"truth": str, "p": float}}, '
                             '"seed": int, "logprobs": bool, "n": bool}')
        items = {str(k): Item(str(v["truth"]), float(v["p"])) for k, v in data["items"].items()}
        return cls(str(data["control"]), [str(label) for label in data["labels"]], items, int(data.get("seed", 0)),
                   bool(data.get("logprobs", True)), bool(data.get("n", True)))

    def key(self, body: Mapping[str, Any]) -> str | None:
        """The task's key: the last one the last user message names (few-shot examples come before it)."""
        for message in reversed(body.get("messages") or []):
            if isinstance(message, Mapping) and message.get("role") == "user":
                content = message.get("content")
                text = content if isinstance(content, str) else json.dumps(content)
                found = KEY.findall(text)
                return found[-1] if found else None
        return None

    def _label(self, item: Item, draw: float, other: float) -> str:
        if draw < item.p:
            return item.truth
        wrong = [label for label in self.labels if label != item.truth]
        return wrong[min(int(other * len(wrong)), len(wrong) - 1)]

    def _choice(self, item: Item, label: str) -> dict[str, Any]:
        prefix, suffix = f'{{"{self.control}": "', '"}'
        choice: dict[str, Any] = {"content": prefix + label + suffix}
        if self.logprobs:
            claimed = math.log(overconfident(item.p))
            choice["logprobs"] = [{"token": token, "logprob": logprob, "bytes": None, "top_logprobs": []}
                                  for token, logprob in ((prefix, 0.0), (label, claimed), (suffix, 0.0))]
        return choice

    def choices(self, body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The answer's choices ({"content", "logprobs"}), or None when the request names no known task."""
        key = self.key(body)
        item = self.items.get(key) if key else None
        if item is None:
            return None
        temperature = float(body.get("temperature") or 0.0)
        if temperature <= 0:
            return [self._choice(item, self._label(item, _unit(self.seed, key, "t0"), _unit(self.seed, key, "w")))]
        count = int(body.get("n") or 1) if self.n else 1
        with self._lock:  # draws keyed by the task and its call number: the same whatever order calls come in
            call = self._asked[key] = self._asked.get(key, 0) + 1
        return [self._choice(item, self._label(item, _unit(self.seed, key, call, i, "s"),
                                               _unit(self.seed, key, call, i, "o")))
                for i in range(count)]


def make_items(count: int, labels: list[str], seed: int, start: int = 0) -> dict[str, Item]:
    """`count` tasks item-<start>... with a random true label and hidden probability each."""
    rng = random.Random(seed)
    return {f"item-{start + i}": Item(rng.choice(labels), hidden_probability(rng)) for i in range(count)}


@dataclass(frozen=True)
class Simulated:
    """One task of the simulated world: what the model claims, whether its answer was right, and p."""

    task_id: str
    p: float
    raw: float
    correct: bool


def simulate(count: int, seed: int, samples: int = 0) -> list[Simulated]:
    """The noisy model's world without a server: logprob scores, or the agreement of `samples` samples
    with the temperature-0 answer (3 labels, as the tests' sentiment config has)."""
    rng = random.Random(seed)
    world = []
    for index in range(count):
        p = hidden_probability(rng)
        correct = rng.random() < p
        if samples:
            # A sample agrees with a right answer when it is right; with a wrong one when it makes the same
            # mistake (one of the two wrong labels).
            agree = p if correct else (1 - p) / 2
            raw = sum(rng.random() < agree for _ in range(samples)) / samples
        else:
            raw = overconfident(p)
        world.append(Simulated(f"t{index}", p, raw, correct))
    return world


@dataclass(frozen=True)
class Trial:
    """One run of calibrate + accept on a simulated project (see `trial`)."""

    ece_before: float
    ece_after: float
    threshold: float | None
    lower_bound: float | None
    accepted: int  # tasks nobody annotated, accepted
    realised: float | None  # precision of the accepted
    oracle: int  # tasks an oracle who knows each p would accept at the same precision
    unannotated: int


def oracle_coverage(ps: list[float], precision: float) -> int:
    """The most tasks whose mean p is at least `precision`, taken from the top (what an oracle accepts)."""
    total = best = 0.0
    count = 0
    for index, p in enumerate(sorted(ps, reverse=True), start=1):
        total += p
        if total / index >= precision:
            best, count = total, index
    return count if best else 0


def trial(world: list[Simulated], annotated: int, precision: float, confidence: float, seed: int) -> Trial:
    """The backend's procedure on a simulated project: a random `annotated` of its tasks are annotated;
    calibrate on them (fit on half, measure on the other), certify with the held-out half, accept the
    tasks nobody annotated whose calibrated score clears the threshold."""
    from llm_backend.core.acceptance import Evidence, certify
    from llm_backend.core.calibration import Observation, calibrate_control, held_out

    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(world)), annotated))
    labelled = [world[i] for i in sorted(chosen)]
    salt = str(seed)
    calibration = calibrate_control("c", [Observation(t.task_id, t.raw, t.correct) for t in labelled], salt=salt,
                                    min_tasks=min(annotated, 100))
    evidence = [Evidence(t.task_id, calibration.mapping(t.raw), t.correct) for t in labelled
                if held_out(t.task_id, salt)]
    certificate = certify(evidence, precision, confidence)
    others = [t for i, t in enumerate(world) if i not in chosen]
    accepted = [t for t in others if certificate.threshold is not None
                and calibration.mapping(t.raw) >= certificate.threshold]
    realised = sum(t.correct for t in accepted) / len(accepted) if accepted else None
    return Trial(calibration.ece_before, calibration.ece_after, certificate.threshold, certificate.lower_bound,
                 len(accepted), realised, oracle_coverage([t.p for t in others], precision), len(others))
