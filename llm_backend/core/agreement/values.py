"""One value per task: TextArea text, Rating and Number, DateTime."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from rapidfuzz import fuzz

from .base import NONE_LABEL, ControlReport, Value, ratio, show


def joined_text(values: list[Value] | None) -> str:
    texts = [str(t) for value in values or [] for t in value.get("text") or []]
    return " ".join(" ".join(texts).split())


@dataclass
class TextReport(ControlReport):
    """TextArea: tasks counts those where at least one side has text."""

    similarity_sum: float = 0.0
    exact: int = 0

    headline_name: ClassVar[str] = "similarity"

    def note(self) -> str:
        return "similarity: normalised Indel similarity of the whitespace-normalised texts (1 = identical), " \
               "over tasks where either side has text."

    @property
    def similarity(self) -> float | None:
        return self.similarity_sum / self.tasks if self.tasks else None

    @property
    def exact_rate(self) -> float | None:
        return ratio(self.exact, self.tasks)

    @property
    def headline(self) -> float | None:
        return self.similarity

    @property
    def parts(self) -> tuple[float, float]:
        return self.similarity_sum, float(self.tasks)

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = joined_text(gold), joined_text(predicted)
        if not want and not got:
            return None, ("", "")
        similarity = fuzz.ratio(want, got) / 100
        self.tasks += 1
        self.similarity_sum += similarity
        self.exact += want == got
        return similarity, (want or NONE_LABEL, got or NONE_LABEL)

    def metrics(self) -> dict[str, Any]:
        return {"similarity": self.similarity, "exact": self.exact_rate}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): similarity {show(self.similarity)} over {self.tasks} tasks, "
                f"identical {self.exact}/{self.tasks}")

    def facts(self) -> list[tuple[str, str]]:
        return [("mean similarity", show(self.similarity)), ("identical", f"{self.exact}/{self.tasks}")]


@dataclass
class NumberReport(ControlReport):
    """Rating and Number: tasks counts those with an annotated number."""

    key: str = "number"
    correct: int = 0
    compared: int = 0  # tasks where both sides have a number
    error_sum: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return ratio(self.correct, self.tasks)

    @property
    def mean_absolute_error(self) -> float | None:
        return self.error_sum / self.compared if self.compared else None

    @property
    def headline(self) -> float | None:
        return self.accuracy

    @property
    def parts(self) -> tuple[float, float]:
        return float(self.correct), float(self.tasks)

    def _number(self, values: list[Value] | None) -> float | None:
        for value in values or []:
            raw = value.get(self.key)
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
                return float(raw)
        return None

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._number(gold), self._number(predicted)
        if want is None:
            return None, ("", "")  # nothing annotated: nothing to compare with
        self.tasks += 1
        self.correct += want == got
        if got is not None:
            self.compared += 1
            self.error_sum += abs(want - got)
        return float(want == got), (f"{want:g}", NONE_LABEL if got is None else f"{got:g}")

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "mean_absolute_error": self.mean_absolute_error}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): accuracy {show(self.accuracy)} ({self.correct}/{self.tasks}), "
                f"mean absolute error {show(self.mean_absolute_error)}")

    def facts(self) -> list[tuple[str, str]]:
        return [("accuracy", show(self.accuracy)), ("mean absolute error", show(self.mean_absolute_error))]


@dataclass
class ExactReport(ControlReport):
    """DateTime, Ranker, Pairwise: the predicted value must equal the annotated one; tasks counts those with an
    annotated value."""

    key: str = "datetime"
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return ratio(self.correct, self.tasks)

    @property
    def headline(self) -> float | None:
        return self.accuracy

    @property
    def parts(self) -> tuple[float, float]:
        return float(self.correct), float(self.tasks)

    def _value(self, values: list[Value] | None) -> str | None:
        for value in values or []:
            raw = value.get(self.key)
            if isinstance(raw, str) and raw.strip():
                return raw.strip()
            if isinstance(raw, (dict, list)) and raw:  # a structured value (a ranking) is equal as JSON
                return json.dumps(raw, sort_keys=True, ensure_ascii=False)
        return None

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._value(gold), self._value(predicted)
        if want is None:
            return None, ("", "")
        self.tasks += 1
        self.correct += want == got
        return float(want == got), (want, got or NONE_LABEL)

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy}

    def summary(self) -> str:
        return f"{self.control} ({self.kind}): accuracy {show(self.accuracy)} ({self.correct}/{self.tasks})"

    def facts(self) -> list[tuple[str, str]]:
        return [("accuracy", show(self.accuracy)), ("correct", f"{self.correct}/{self.tasks}")]


