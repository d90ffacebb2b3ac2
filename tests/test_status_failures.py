"""The status page of a job with failures, as a person sees it in a real headless Chromium: the failed task ids
with links to them in Label Studio next to their cause, a bar that shows done and failed work apart, no ETA
once the job is finished, and an icon; checked in the DOM and on the screenshot's pixels."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from testkit.app_server import AppServer
from testkit.browser import Browser, chromium_path
from testkit.llm_server import FakeLLMServer, Reply
from tests.test_status_page import AUTH, SECRETS, _body

LS_URL = "http://127.0.0.1:9"  # nothing listens: the links are only built from it
BLUE, RED = (0x2F, 0x6F, 0xDE), (0xA4, 0x0E, 0x26)


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel[:3], colour, strict=True))


def test_the_job_without_failures_has_no_failed_part_and_the_icon_is_served(make_client: Callable[..., Any],
                                                                           llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client = make_client(basic_auth_user="ls", basic_auth_pass=SECRETS["BASIC_AUTH_PASS"])
    assert client.post("/predict", json=_body("2.1", range(1, 4), "fine"), headers=AUTH).status_code == 200
    html = client.get("/", headers=AUTH).get_data(as_text=True)
    assert 'class="failed" style="width: 0.0%"' in html and 'class="done" style="width: 100.0%"' in html
    assert 'data-metric="eta">finished<' in html and "ETA 0 s" not in html
    icon = client.get("/favicon.ico")  # asked without credentials by every browser
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and icon.get_data().startswith(b"<svg")


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (.ci/run installs it)")
def test_failed_tasks_are_listed_with_links_and_the_bar_shows_them_apart(
    start_app: Callable[..., AppServer], llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.add_rule("invalid", Reply(json={"sentiment": "Wonderful"}))
    backend = start_app(BASIC_AUTH_USER="ls", LABEL_STUDIO_URL=LS_URL, **SECRETS)
    for body in (_body("4.1", range(1, 10), "fine"), _body("4.1", range(10, 13), "invalid")):
        assert requests.post(f"{backend.url}/predict", json=body, headers=AUTH, timeout=60).status_code == 200
    [group] = requests.get(f"{backend.url}/jobs", headers=AUTH, timeout=5).json()["projects"][0]["jobs"][0]["errors"]
    assert group["task_ids"] == [10, 11, 12]
    expected = [f"{LS_URL}/projects/4/data?task={i}" for i in (10, 11, 12)]
    assert [task["link"] for task in group["tasks_failed"]] == expected

    with Browser(width=1280, height=900) as browser:
        page = browser.open(f"{backend.url}/", headers=AUTH)
        links = page.evaluate("""Array.from(document.querySelectorAll('[data-metric="failed-tasks-invalid_answer"] a'))
                                 .map(a => ({text: a.innerText, href: a.href}))""")
        parts = page.evaluate("""Array.from(document.querySelectorAll('#project-4 .bar span')).map(e => {
            const r = e.getBoundingClientRect(); return {part: e.className, x: r.x, y: r.y, w: r.width, h: r.height};
        })""")
        cell = page.evaluate("""(() => {
            const e = document.querySelector('[data-metric="failed-tasks-invalid_answer"]');
            const r = e.getBoundingClientRect();
            return {text: e.innerText, x: r.x, y: r.y, w: r.width, h: r.height}; })()""")
        eta = page.evaluate("""document.querySelector('#project-4 [data-metric="eta"]').innerText""")
        icon = page.evaluate("document.querySelector('link[rel=icon]').href")
        shot = page.screenshot()
    (tmp_path / "status-failures.png").write_bytes(shot)

    assert links == [{"text": str(i), "href": link} for i, link in zip((10, 11, 12), expected, strict=True)]
    assert cell["text"] == "10, 11, 12" and eta == "finished" and icon == f"{backend.url}/favicon.ico"
    done, failed = parts
    assert (done["part"], failed["part"]) == ("done", "failed")
    assert done["w"] == pytest.approx(260 * 9 / 12, abs=1) and failed["w"] == pytest.approx(260 * 3 / 12, abs=1)
    assert failed["x"] == pytest.approx(done["x"] + done["w"], abs=1)  # side by side, failed after done

    image = Image.open(io.BytesIO(shot)).convert("RGB")
    middle = int(done["y"] + done["h"] / 2)
    assert _near(image.getpixel((int(done["x"] + done["w"] / 2), middle)), BLUE)
    assert _near(image.getpixel((int(failed["x"] + failed["w"] / 2), middle)), RED)
    ids = image.crop((int(cell["x"]), int(cell["y"]), int(cell["x"] + cell["w"]), int(cell["y"] + cell["h"])))
    inked = sum(1 for pixel in ids.getdata() if min(pixel) < 128)  # the (blue) link text drawn, not an empty cell
    assert inked >= 8 * len("101112")


def test_a_missing_key_and_the_demo_model_read_on_the_page_as_on_the_command_line(
    make_client: Callable[..., Any], llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keyless = make_client(llm_model="openai/gpt-4o-mini", llm_api_key=None, llm_api_base=None, llm_max_retries=0)
    keyless.post("/predict", json=_body("5.1", range(1, 3), "x"))
    [group] = keyless.get("/jobs").get_json()["projects"][0]["jobs"][0]["errors"]
    assert (group["cause"], group["title"]) == ("missing_key", "the model needs an API key that is not set")
    assert group["last_error"] == ("LLM_MODEL=openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set: set "
                                   "LLM_API_KEY or export OPENAI_API_KEY")
    assert "set LLM_API_KEY (or the variable the message names)" in keyless.get("/").get_data(as_text=True)
    assert llm.calls == 0

    demo = make_client(llm_model="demo")
    assert demo.post("/predict", json=_body("7.1", range(1, 4), "fine")).status_code == 200
    [job] = next(p for p in demo.get("/jobs").get_json()["projects"] if p["project"] == "7")["jobs"]
    assert (job["done"], job["usage"]["calls"], job["usage"]["cost"]) == (3, 0, 0.0)
    html = demo.get("/").get_data(as_text=True)
    seven = html.split('id="project-7"', 1)[1]
    assert 'data-metric="calls">0<' in seven and 'data-metric="cost">$0<' in seven
