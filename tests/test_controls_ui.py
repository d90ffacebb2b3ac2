"""New controls in a real Label Studio 1.23.2: predicted with one click, stored, and shown in its
labeling UI in headless Chromium (Pairwise, Ranker, HyperTextLabels); chat evaluations (whole
conversation, per message) stored, and why Label Studio Community's editor cannot show them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.app_server import AppServer
from testkit.browser import Browser, Page, chromium_path
from testkit.llm_server import FakeLLMServer, Reply
from tests.test_objects import CHAT
from tests.test_pairwise_ranker import ITEMS, PAIRWISE, RANKER, TASK

pytestmark = [pytest.mark.label_studio, pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")]


def _wait_for(page: Page, expression: str, timeout: float = 60.0) -> Any:
    """The expression's value once it is truthy; fails after `timeout` seconds with the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"not shown within {timeout:.0f} s: {expression} (last value {value!r})")


def _navigate(page: Page, url: str) -> None:
    page.call("Page.navigate", {"url": url})
    page.browser.wait_event("Page.loadEventFired", page.session)


def _log_in(browser: Browser, label_studio: Any) -> Page:
    page = browser.open(f"{label_studio.url}/user/login/")
    page.evaluate(f"""(() => {{
        document.querySelector('input[name=email]').value = {json.dumps(label_studio.username)};
        document.querySelector('input[name=password]').value = {json.dumps(label_studio.password)};
        document.querySelector('form').submit(); }})()""")
    page.browser.wait_event("Page.loadEventFired", page.session)
    return page


def _open_task(page: Page, label_studio: Any, project: int, task: int, shows: str) -> Any:
    """The task in Label Studio's labeling view once its text `shows`: the result the editor loaded
    (the prediction, which Label Studio 1.23 shows as the annotation to start from)."""
    _navigate(page, f"{label_studio.url}/projects/{project}/data?task={task}")
    _wait_for(page, f"document.body.innerText.includes({json.dumps(shows)})")
    loaded = _wait_for(page, """(() => { const a = window.Htx && window.Htx.annotationStore.selected;
        const result = a && a.serializeAnnotation(); return result && result.length ? result : null; })()""")
    return loaded


def _predict(label_studio: Any, backend: AppServer, title: str, config: str, data: dict[str, Any]
             ) -> tuple[int, int, dict[str, Any]]:
    project = label_studio.create_project(title, config)
    [task] = label_studio.import_tasks(project, [data])
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, [task])  # the Data Manager's "Retrieve predictions": one click
    [prediction] = label_studio.predictions(project)
    return project, task, prediction


def test_pairwise_and_ranker_are_stored_and_shown(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    llm.add_rule("<a>\nALPHA", Reply(json={"better": "left"}))
    llm.add_rule("<a>\nBETA", Reply(json={"better": "right"}))
    llm.add_rule("[b2]", Reply(json={"rank": ["b2", "3", "1"]}))
    backend = start_app()
    pairwise_project, pairwise_task, pairwise = _predict(label_studio, backend, "pairwise ui", PAIRWISE, TASK["data"])
    ranker_project, ranker_task, ranker = _predict(label_studio, backend, "ranker ui", RANKER,
                                                   {"query": "Which animals control pests?", "items": ITEMS})
    assert [r["value"] for r in pairwise["result"]] == [{"selected": "left"}]
    assert [r["value"] for r in ranker["result"]] == [{"ranker": {"rank": ["b2", "3", "1"]}}]
    with Browser(width=1280, height=1000) as browser:
        page = _log_in(browser, label_studio)
        loaded = _open_task(page, label_studio, pairwise_project, pairwise_task, "ALPHA: Paris.")
        assert [(r["from_name"], r["type"], r["value"]) for r in loaded] == [
            ("better", "pairwise", {"selected": "left"})]
        # The editor's Pairwise control holds the choice: the left text is the one shown as selected.
        assert page.evaluate("window.Htx.annotationStore.selected.names.get('better').selected") == "left"
        loaded = _open_task(page, label_studio, ranker_project, ranker_task, "Pest control")
        assert [(r["from_name"], r["type"], r["value"]) for r in loaded] == [
            ("rank", "ranker", {"ranker": {"rank": ["b2", "3", "1"]}})]
        # The ranked column lists the items in the predicted order.
        shown = _wait_for(page, """(() => { const items = [...document.querySelectorAll('.htx-ranker-item')]
            .map(e => e.innerText); return items.length === 3 ? items : null; })()""")
        assert [item.split("\n")[-1] for item in shown] == ["b2", "3", "1"], shown


def _gallery_config(label_studio_executable: Path, template: str) -> str:
    """A template of the installed Label Studio's gallery, as its "Labeling Setup" offers it."""
    [path] = label_studio_executable.parent.parent.glob(
        f"lib/python*/site-packages/label_studio/annotation_templates/*/{template}/config.yml")
    return str(yaml.safe_load(path.read_text(encoding="utf-8"))["config"])


def test_chat_evaluation_and_html_ner_projects_are_predicted_and_shown(
    label_studio: Any, label_studio_executable: Path, start_app: Callable[..., AppServer],
    llm: FakeLLMServer
) -> None:
    chat_config = _gallery_config(label_studio_executable, "chat_llm_eval")
    html_config = _gallery_config(label_studio_executable, "html-ner-tagging-person-and-organization")
    llm.add_rule('"questions_answered"', Reply(json={  # chatbot (earlier rules win): each assistant message
        "accuracy": [{"message": 2, "value": 4}], "documentation": [{"message": 2, "value": "Yes"}],
        "questions_answered": [{"message": 2, "value": "Yes"}], "style": [{"message": 2, "value": []}]}))
    llm.add_rule("user: How do I import tasks?", Reply(json={
        "answered_rating": "5 - Yes - all of them were answered", "topics": ["Project Setup", "Other"],
        "comments": ["The assistant pointed at the Import button."]}))
    llm.add_rule("Mary Smith", Reply(json={"ner": [{"text": "Mary Smith", "label": "Person"},
                                                   {"text": "BetaCorp", "label": "Organization"}]}))
    backend = start_app()
    chat_project, chat_task, chat = _predict(label_studio, backend, "chat llm eval", chat_config,
                                             {"text": "Evaluate the agent.", "chat": CHAT})
    _bot_project, _bot_task, bot = _predict(label_studio, backend, "chatbot", _gallery_config(
        label_studio_executable, "chatbot"), {"chat": CHAT, "max": 10})
    html = "<div>Mary Smith is employed at <b>BetaCorp</b>.</div><p>They are located in San Francisco.</p>"
    html_project, html_task, ner = _predict(label_studio, backend, "html ner", html_config, {"text": html})
    assert {r["from_name"]: r["value"] for r in chat["result"]} == {
        "answered_rating": {"choices": ["5 - Yes - all of them were answered"]},
        "topics": {"choices": ["Project Setup", "Other"]},
        "comments": {"text": ["The assistant pointed at the Import button."]}}
    assert [(r["value"]["text"], r["value"]["hypertextlabels"]) for r in ner["result"]] == [
        ("Mary Smith", ["Person"]), ("BetaCorp", ["Organization"])]
    # The chatbot's per-message controls: Label Studio stored the assistant message's region and one result per
    # control about it, sharing its id ("Yes" is not a documentation choice: left out; no style chosen: no result).
    message = {"role": "assistant", "content": "Use the Import button."}
    assert sorted((r["from_name"], r["type"], json.dumps(r["value"], sort_keys=True)) for r in bot["result"]) == [
        ("accuracy", "rating", json.dumps({"chatmessage": message, "rating": 4}, sort_keys=True)),
        ("chat", "chatmessage", json.dumps({"chatmessage": message}, sort_keys=True)),
        ("questions_answered", "choices", json.dumps({"chatmessage": message, "choices": ["Yes"]}, sort_keys=True))]
    assert len({r["id"] for r in bot["result"]}) == 1
    with Browser(width=1280, height=1000) as browser:
        page = _log_in(browser, label_studio)
        # Why a chat project's prediction showed empty: Label Studio Community 1.23.2's editor has no <Chat> tag
        # (an Enterprise tag: the chat templates say `type: enterprise`) and refuses the config itself.
        _navigate(page, f"{label_studio.url}/projects/{chat_project}/data?task={chat_task}")
        _wait_for(page, """[...document.querySelectorAll('[class*=error], [class*=Error]')]
            .some(e => e.innerText.includes('Tag with name chat is not registered'))""")
        loaded = _open_task(page, label_studio, html_project, html_task, "Mary Smith")
        assert [r["value"]["text"] for r in loaded] == ["Mary Smith", "BetaCorp"]
        # The editor recomputes globalOffsets from the XPaths in the page it shows: they are the ones predicted.
        assert [r["value"]["globalOffsets"] for r in loaded] == [r["value"]["globalOffsets"] for r in ner["result"]]
        # Label Studio resolved each span's XPaths in the page it shows and highlighted exactly that text.
        highlighted = _wait_for(page, """(() => {
            const spans = [];
            for (const doc of [document, ...[...document.querySelectorAll('iframe')].map(f => f.contentDocument)]) {
                if (!doc) continue;
                spans.push(...[...doc.querySelectorAll('.htx-highlight')].map(e => e.innerText));
            }
            return spans.length >= 2 ? spans : null; })()""")
        assert sorted(text.strip() for text in highlighted) == ["BetaCorp", "Mary Smith"], highlighted
