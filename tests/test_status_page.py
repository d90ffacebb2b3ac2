"""The status page (`GET /`) and its JSON twin (`GET /jobs`): behind basic auth, no secret and no task text,
the numbers of the jobs, errors grouped by cause with their fix; rendered by a real headless Chromium
and checked on its screenshot."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from testkit.browser import Browser, chromium_path
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, BackendProcess

# The secrets the redaction tests use (tests/test_hostile.py).
SECRETS = {"LLM_API_KEY": "sk-live-SECRET-4242", "LABEL_STUDIO_API_KEY": "ls-token-SECRET-777",
           "BASIC_AUTH_PASS": "pass-SECRET-99", "WEBHOOK_SECRET": "hook-SECRET-55"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:pass-SECRET-99").decode()}
PRIVATE = "PRIVATE-TASK-TEXT"  # in every task's text: the page must never show it


def _body(project: str, ids: range, word: str) -> dict[str, Any]:
    return {"label_config": CHOICES_CONFIG, "project": project,
            "tasks": [{"id": i, "data": {"text": f"{word} {PRIVATE} {i}"}} for i in ids]}


def _scenario(llm: FakeLLMServer) -> None:
    # A hostile provider that echoes the key, and a model whose answers never fit the config.
    llm.add_rule("keyless", Reply(status=401, error_message="Incorrect API key provided: sk-live-SECRET-4242"))
    usage = {"prompt_tokens": 100, "completion_tokens": 5}
    llm.set_default(Reply(json={"sentiment": "Positive"}, usage=usage))
    llm.add_rule("invalid", Reply(json={"sentiment": "Wonderful"}, usage=usage))


def _check_no_secret_and_no_task_text(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS.values():
            assert secret not in text
        assert PRIVATE not in text


def test_status_page_and_jobs_json_behind_basic_auth_reveal_nothing_secret(
    make_client: Callable[..., Any], llm: FakeLLMServer
) -> None:
    _scenario(llm)
    client = make_client(basic_auth_user="ls", label_studio_url="http://127.0.0.1:9", **{
        key.lower(): value for key, value in SECRETS.items()})
    assert client.get("/health").status_code == 200  # the probe stays open
    for path in ("/", "/jobs"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")

    assert client.post("/predict", json=_body("4.1", range(1, 7), "fine"), headers=AUTH).status_code == 200
    assert client.post("/predict", json=_body("4.1", range(7, 9), "invalid"), headers=AUTH).status_code == 200
    failed = client.post("/predict", json=_body("6.1", range(20, 23), "keyless"), headers=AUTH)
    assert failed.status_code == 502 and failed.get_json()["error"]["code"] == "model_auth"

    html = client.get("/", headers=AUTH).get_data(as_text=True)
    data = client.get("/jobs", headers=AUTH).get_json()
    _check_no_secret_and_no_task_text(html, str(data))
    four, six = data["projects"]
    assert (four["project"], six["project"]) == ("4", "6")
    [job] = four["jobs"]
    assert (job["total"], job["done"], job["failed"], job["queued"], job["running"]) == (8, 6, 2, 0, 0)
    assert job["usage"]["calls"] == 6 + 2 * 2  # each invalid answer was asked once more
    assert job["usage"]["prompt_tokens"] == 10 * 100 and job["cache_hit_rate"] == 0.0
    [invalid] = job["errors"]
    assert (invalid["cause"], invalid["tasks"]) == ("invalid_answer", 2)
    assert "invalid answer after one repair" in invalid["last_error"]
    [auth] = six["jobs"][0]["errors"]
    assert (auth["cause"], auth["tasks"]) == ("auth", 3)
    assert "Incorrect API key provided: ***" in auth["last_error"] and "LLM_API_KEY" in auth["fix"]
    assert "the model provider refused the API key" in [problem["title"] for problem in data["problems"]]
    assert data["backend"]["writeback"] is True

    assert "<h2>Project 4</h2>" in html and "the model provider refused the API key" in html
    assert 'data-metric="done">6<' in html and 'data-metric="failed">2<' in html
    assert 'data-metric="errors-invalid_answer">2<' in html and "Incorrect API key provided: ***" in html


def test_the_page_escapes_what_it_shows(make_client: Callable[..., Any], llm: FakeLLMServer) -> None:
    llm.set_default(Reply(status=400, error_message="<script>alert(1)</script> bad parameter"))
    client = make_client()
    client.post("/predict", json=_body("9.1", range(1, 2), "x"))
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (.ci/run installs it)")
def test_status_page_renders_its_numbers_in_headless_chromium(
    start_backend: Callable[..., BackendProcess], llm: FakeLLMServer, tmp_path: Path
) -> None:
    _scenario(llm)
    backend = start_backend(BASIC_AUTH_USER="ls", LABEL_STUDIO_URL="http://127.0.0.1:9", **SECRETS)
    for body in (_body("4.1", range(1, 13), "fine"), _body("4.1", range(13, 16), "invalid"),
                 _body("6.1", range(20, 23), "keyless")):
        requests.post(f"{backend.url}/predict", json=body, headers=AUTH, timeout=60)
    data = requests.get(f"{backend.url}/jobs", headers=AUTH, timeout=5).json()
    job = data["projects"][0]["jobs"][0]
    assert (job["total"], job["done"], job["failed"]) == (15, 12, 3)

    with Browser(width=1280, height=1000) as browser:
        page = browser.open(f"{backend.url}/", headers=AUTH)
        text = page.evaluate("document.body.innerText")
        cells = page.evaluate("""Array.from(document.querySelectorAll('#project-4 [data-metric]')).map(e => {
            const r = e.getBoundingClientRect();
            const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            return {metric: e.dataset.metric, text: e.innerText.trim(), x: r.x, y: r.y, w: r.width, h: r.height,
                    visible: hit === e || e.contains(hit)};
        })""")
        shot = page.screenshot()
    (tmp_path / "status.png").write_bytes(shot)
    _check_no_secret_and_no_task_text(text)
    assert "llm-backend status" in text and "Project 4" in text and "Project 6" in text
    assert "the model provider refused the API key" in text and "Fix:" in text

    shown = {cell["metric"]: cell for cell in cells}
    expected = {"total": "15", "queued": "0", "running": "0", "done": "12", "failed": "3", "calls": "18",
                "tokens": str(18 * 100 + 18 * 5), "errors-invalid_answer": "3", "model_version": job["model_version"]}
    assert {metric: shown[metric]["text"] for metric in expected} == expected
    image = Image.open(io.BytesIO(shot)).convert("L")
    assert image.size == (1280, 1000)
    glyphs = {}
    for metric in expected:
        cell = shown[metric]
        assert cell["visible"] and cell["w"] > 0 and cell["h"] > 0 and cell["y"] + cell["h"] <= 1000, cell
        crop = image.crop((int(cell["x"]), int(cell["y"]), int(cell["x"] + cell["w"]), int(cell["y"] + cell["h"])))
        ink = sum(1 for value in crop.getdata() if value < 128)  # dark text on the white page
        assert ink >= 8 * len(cell["text"]), (metric, ink)  # drawn, not blank or hidden
        glyphs[metric] = _trimmed(crop)
    # The same text draws the same pixels, different numbers different ones: what is drawn is the number.
    assert glyphs["queued"] == glyphs["running"]
    assert len({glyphs[m] for m in ("total", "done", "failed", "calls", "tokens")}) == 5


def _trimmed(crop: Image.Image) -> bytes:
    """The cell's ink, cut to its bounding box: comparable between cells of different widths."""
    mask = crop.point(lambda value: 255 if value < 128 else 0)
    box = mask.getbbox()
    return mask.crop(box).tobytes() + bytes(str(box[2] - box[0]), "ascii") if box else b""


def test_jobs_json_counts_progress_while_a_job_runs(make_client: Callable[..., Any], llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}, delay=0.2))
    client = make_client(llm_concurrency=2, predict_deadline=0.5)
    first = client.post("/predict", json=_body("3.1", range(1, 21), "slow")).get_json()["results"]
    left = [r for r in first if "result" not in r]
    assert left and all("runs on as a background job" in r["error"] and "write-back is off" in r["error"]
                        for r in left)
    [job] = client.get("/jobs").get_json()["projects"][0]["jobs"]
    assert job["queued"] + job["running"] > 0 and job["eta_seconds"] is not None
    deadline = time.monotonic() + 30
    while job["queued"] + job["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
        [job] = client.get("/jobs").get_json()["projects"][0]["jobs"]
    assert (job["done"], job["delivered"], job["eta_seconds"]) == (20, 20 - len(left), 0.0)
    assert job["rate"] > 0


def test_start_up_problems_are_on_the_status_page(make_settings: Callable[..., Any]) -> None:
    from llm_backend.models.preflight import model_targets
    from llm_backend.web.app import create_app, services_of
    from tests.conftest import free_port

    app = create_app(make_settings(llm_api_base=f"http://127.0.0.1:{free_port()}/v1"))
    services = services_of(app)
    services.startup.run(model_targets(services.settings, services.routing), None, timeout=2)
    client = app.test_client()
    [problem] = client.get("/jobs").get_json()["problems"]
    assert problem["title"] == "start-up check failed (api_base)" and "LLM_API_BASE" in problem["message"]
    assert "start-up check failed (api_base)" in client.get("/").get_data(as_text=True)
