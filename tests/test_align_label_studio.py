"""The placement rule through a real Label Studio 1.23.2: nested and CJK names, a name inside a
longer word, an emoji inside a ZWJ sequence. Every stored region's text is task.data.text[start:end]
at the intended occurrence, and its `meta` (how the quote matched) is stored as sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from testkit.app_server import AppServer
from testkit.llm_server import FakeLLMServer, Reply

pytestmark = pytest.mark.label_studio

LABELS = '<Label value="Person"/><Label value="Organization"/><Label value="Location"/><Label value="Emoji"/>'
CONFIG = f'<View><Text name="text" value="$text"/><Labels name="ner" toName="text">{LABELS}</Labels></View>'
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
MAN = "\U0001f468"

# (text, the model's answer, the intended (start, end, label) of every region, in text order)
CASES: list[tuple[str, list[tuple[str, str]], list[tuple[int, int, str]]]] = [
    ("Case one: Bank of America opened in America, then in New York; York came later.",
     [("America", "Location"), ("York", "Location"), ("Bank of America", "Organization"), ("New York", "Location")],
     [(10, 25, "Organization"), (36, 43, "Location"), (53, 61, "Location"), (63, 67, "Location")]),
    ("ケース二：神奈川県横浜市に住む。横浜は大きい。京都府京都市の京都駅。",
     [("横浜", "Location"), ("横浜市", "Location"), ("京都府", "Location"), ("京都", "Location")],
     [(9, 12, "Location"), (16, 18, "Location"), (23, 26, "Location"), (26, 28, "Location")]),
    (f"Case three: the Microsoftware team {FAMILY} met Microsoft and a man {MAN}.",
     [("Microsoft", "Organization"), (MAN, "Emoji")],
     [(45, 54, "Organization"), (65, 66, "Emoji")]),
]


def test_stored_regions_sit_on_the_intended_occurrence(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    for text, answer, _ in CASES:
        llm.add_rule(text[:10], Reply(json={"ner": [{"text": quote, "label": label} for quote, label in answer]}))
    backend = start_app()
    project = label_studio.create_project("placement e2e", CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": text} for text, _, _ in CASES])
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, task_ids)
    for task_id, (_, _, intended) in zip(task_ids, CASES, strict=True):
        task = label_studio.get_task(task_id)
        text = task["data"]["text"]
        [prediction] = task["predictions"]
        regions = sorted(prediction["result"], key=lambda region: region["value"]["start"])
        for region in regions:
            value = region["value"]
            assert value["text"] == text[value["start"] : value["end"]], region
            assert region["meta"] == {"alignment": "exact", "alignment_score": 1.0}, region
        assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in regions] == intended
