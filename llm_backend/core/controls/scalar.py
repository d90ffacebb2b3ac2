"""One value per task: <Rating>, <Number> and <DateTime>."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from ..agreement import ExactReport, NumberReport
from ..config_types import Control
from ..objects import IMAGE, TEXT
from .base import MISSING, ControlSpec, Dropped, RegionInputs, Validator, Value
from .combine import MEDIAN, Combined, median
from .demo_rules import first_date


def rating_bounds(control: Control) -> tuple[int, int]:
    return 1, int(control.attrs.get("maxRating", "5") or 5)


def number_bounds(control: Control) -> tuple[float | None, float | None, float | None]:
    def parse(name: str) -> float | None:
        raw = control.attrs.get(name)
        try:
            return float(raw) if raw not in (None, "") else None
        except ValueError:
            return None

    return parse("min"), parse("max"), parse("step")


def _first(values: list[Value], key: str) -> Any:
    present = [value[key] for value in values if value.get(key) is not None]
    return present[0] if present else MISSING


class RatingSpec(ControlSpec):
    tag = "Rating"
    media = frozenset({TEXT, IMAGE})  # about the whole input, an image too

    def json_schema(self, control: Control) -> dict[str, Any]:
        low, high = rating_bounds(control)
        return {"type": "integer", "minimum": low, "maximum": high}

    def validator(self, control: Control) -> Validator:
        low, high = rating_bounds(control)

        def validate(value: object, dropped: list[Dropped]) -> int:
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"must be a whole number from {low} to {high}") from None
            if not math.isfinite(number) or number != int(number) or not low <= number <= high:
                raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
            return int(number)

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        low, high = rating_bounds(control)
        return {"min": low, "max": high}

    def region_values(self, control: Control, answer: int) -> list[Value]:
        return [{"rating": answer}]

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return _first(values, "rating")

    def typical_answer(self, control: Control, text: str) -> Any:
        return rating_bounds(control)[1]

    def long_text(self, control: Control) -> str:
        return MEDIAN

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        return median(answers)

    def report(self, control: Control) -> NumberReport:
        return NumberReport(control.name, control.kind, key="rating")


class NumberSpec(ControlSpec):
    tag = "Number"
    media = frozenset({TEXT, IMAGE})  # about the whole input, an image too

    def json_schema(self, control: Control) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "number"}
        low, high, _step = number_bounds(control)
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
        return schema

    def validator(self, control: Control) -> Validator:
        low, high, step = number_bounds(control)

        def validate(value: object, dropped: list[Dropped]) -> int | float:
            if isinstance(value, bool):
                raise ValueError("must be a number")
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError("must be a number") from None
            if not math.isfinite(number):
                raise ValueError("must be a finite number")
            if (low is not None and number < low) or (high is not None and number > high):
                bounds = " and ".join(f"{word} {bound:g}" for word, bound in (("at least", low), ("at most", high))
                                      if bound is not None)
                raise ValueError(f"must be {bounds}, got {number:g}")
            if step:
                base = low or 0.0
                number = round(base + round((number - base) / step) * step, 10)
            return int(number) if number == int(number) else number

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        low, high, step = number_bounds(control)
        return {"min": low, "max": high, "step": step}

    def region_values(self, control: Control, answer: int | float) -> list[Value]:
        return [{"number": answer}]

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return _first(values, "number")

    def typical_answer(self, control: Control, text: str) -> Any:
        low, high, _step = number_bounds(control)
        return high if high is not None else low if low is not None else 0

    def long_text(self, control: Control) -> str:
        return MEDIAN

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        return median(answers)

    def report(self, control: Control) -> NumberReport:
        return NumberReport(control.name, control.kind, key="number")


DATETIME_FORMATS = {
    # Label Studio's DateTime `only` attribute -> the value format it stores.
    "date": ("%Y-%m-%d", "YYYY-MM-DD"),
    "time": ("%H:%M", "HH:MM (24-hour)"),
    "month": ("%Y-%m", "YYYY-MM"),
    "year": ("%Y", "YYYY"),
    "": ("%Y-%m-%dT%H:%M", "YYYY-MM-DDTHH:MM"),
}


def datetime_format(control: Control) -> tuple[str, str]:
    """(strftime pattern, how it is shown to the model) for the control's `only` attribute."""
    only = ",".join(sorted(part.strip() for part in control.attrs.get("only", "").split(",") if part.strip()))
    return DATETIME_FORMATS.get(only if only in DATETIME_FORMATS else "", DATETIME_FORMATS[""])


class DateTimeSpec(ControlSpec):
    tag = "DateTime"
    media = frozenset({TEXT, IMAGE})  # about the whole input, an image too

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {"type": "string", "description": f"written {datetime_format(control)[1]}"}

    def validator(self, control: Control) -> Validator:
        pattern, shown = datetime_format(control)

        def validate(value: object, dropped: list[Dropped]) -> str:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            text = str(value).strip() if isinstance(value, (str, int)) else ""
            # Models add seconds, a space instead of "T", or a time to a date: keep the part the format asks for.
            for candidate in (text, text.replace(" ", "T")[:16], text[:10], text[:7]):
                try:
                    return dt.datetime.strptime(candidate, pattern).strftime(pattern)
                except ValueError:
                    continue
            raise ValueError(f"must be a date/time written {shown}, got {value!r}")

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        return {"format": datetime_format(control)[1]}

    def region_values(self, control: Control, answer: str) -> list[Value]:
        return [{"datetime": answer}]

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return _first(values, "datetime")

    def typical_answer(self, control: Control, text: str) -> Any:
        return dt.datetime(2024, 3, 5, 14, 30).strftime(datetime_format(control)[0])

    def report(self, control: Control) -> ExactReport:
        return ExactReport(control.name, control.kind, key="datetime")

    def demo_answer(self, control: Control, inputs: RegionInputs) -> str:
        # The format lives in the control's `only` attribute, not in the schema.
        return first_date(inputs.texts.get(control.to_name[0], "")).strftime(datetime_format(control)[0])
