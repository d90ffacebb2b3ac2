"""A /predict's batch summary counts the same on the job path as on the direct path: tasks answered in part
(a long text with characters no part read), replies that needed a repair, and where the scores came from;
the job's status (the status page and /jobs) counts them too."""

from __future__ import annotations

import re
from typing import Any

import pytest

from testkit.documents import gazetteer_for, planted_document
from testkit.llm_server import FakeLLMServer, Reply
from tests.test_long_text_refusals import MARKER, NER_CONFIG, REFUSAL

FENCED = "zeppelin"  # the short task's word: its reply comes in a code fence, which reading it repairs
SUMMARY = re.compile(r"predict:.* partial=(\d+) unread=(\d+) \((\d+) characters\) reply_repairs=(\d+) signals=(\S+)")


def _batch(llm: FakeLLMServer) -> list[dict[str, Any]]:
    text, planted = planted_document(seed=35, chars=30_000, entities=30)
    middle = text.index(" the ", len(text) // 2) + 1
    text = text[:middle] + MARKER + " " + text[middle:]  # the provider refuses every part that shows it
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens = 2048
    llm.add_rule(MARKER, Reply(status=400, error_message=REFUSAL))
    llm.add_rule(FENCED, Reply(style="fence"))
    return [{"id": 1, "data": {"text": text}}, {"id": 2, "data": {"text": f"A {FENCED} over Hamburg."}},
            {"id": 3, "data": {"text": "Nothing to see here."}}]


def _summary(caplog: pytest.LogCaptureFixture) -> tuple[int, int, int, int, str]:
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("predict:")]
    assert lines, "no batch summary logged"
    match = SUMMARY.search(lines[-1])
    assert match is not None, lines[-1]
    partial, unread, characters, repaired, signals = match.groups()
    return int(partial), int(unread), int(characters), int(repaired), signals


def test_the_job_paths_summary_counts_partial_tasks_repairs_and_signals_as_the_direct_path_does(
        make_client: Any, llm: FakeLLMServer, caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    tasks = _batch(llm)
    caplog.set_level("INFO", logger="llm_backend")
    body = {"label_config": NER_CONFIG, "tasks": tasks}

    direct = make_client(llm_context_tokens=2048, jobs_enabled=False, cache_dir=tmp_path / "direct")
    results = direct.post("/predict", json={**body, "project": "5"}).get_json()["results"]
    assert all("result" in result for result in results) and "not read" in results[0]["error"]
    direct_summary = _summary(caplog)
    partial, unread, characters, repaired, signals = direct_summary
    assert (partial, unread, repaired) == (1, 1, 1) and characters > 0 and signals != "-"

    caplog.clear()
    through_job = make_client(llm_context_tokens=2048, cache_dir=tmp_path / "job")
    results = through_job.post("/predict", json={**body, "project": "5"}).get_json()["results"]
    assert all("result" in result for result in results) and "not read" in results[0]["error"]
    job_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predict:")]
    assert "(job " in job_lines[-1]  # this batch went through the project's job
    assert _summary(caplog) == direct_summary

    [project] = [p for p in through_job.get("/jobs").get_json()["projects"] if p["project"] == "5"]
    [job] = project["jobs"]
    assert (job["partial"], job["unread"], job["reply_repairs"]) == (1, 1, 1)
    assert ",".join(f"{name}:{count}" for name, count in sorted(job["signals"].items())) == signals
    page = through_job.get("/").get_data(as_text=True)
    assert re.search(r'data-metric="partial">1 \(1\)<', page), "the status page shows the partial task"
