"""Images through vision models, the pixel -> percent conversion, DateTime, several inputs."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

from llm_backend.core.controls import BoxAnswer, PointAnswer
from llm_backend.core.controls.shapes import box_value, point_value
from testkit.llm_server import FakeLLMServer, Reply

IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="boxes" toName="image"><Label value="Car"/><Label value="Person"/></RectangleLabels>
  <KeyPointLabels name="points" toName="image" strokeWidth="2"><Label value="Eye"/></KeyPointLabels>
  <Choices name="scene" toName="image"><Choice value="Street"/><Choice value="Indoor"/></Choices>
  <TextArea name="caption" toName="image"/>
</View>"""


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png(width, height)).decode()


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        # 200 x 100 image: x is measured against 200, y against 100.
        (BoxAnswer("Car", 20, 10, 120, 60), {"x": 10.0, "y": 10.0, "width": 50.0, "height": 50.0}),
        (BoxAnswer("Car", -50, -10, 100, 200), {"x": 0.0, "y": 0.0, "width": 50.0, "height": 100.0}),
        (BoxAnswer("Car", 120, 60, 20, 10), {"x": 10.0, "y": 10.0, "width": 50.0, "height": 50.0}),
        (BoxAnswer("Car", 150, 90, 260, 140), {"x": 75.0, "y": 90.0, "width": 25.0, "height": 10.0}),
        (BoxAnswer("Car", 300, 10, 400, 20), None),
        (BoxAnswer("Car", 50, 50, 50, 80), None),
        (BoxAnswer("Car", 10, 10, 10.5, 40), None),
    ],
    ids=["inside", "clipped", "corners-swapped", "clipped-bottom-right", "outside", "zero-width", "sub-pixel"],
)
def test_box_conversion_non_square(box: BoxAnswer, expected: dict[str, float] | None) -> None:
    value = box_value(box, 200, 100)
    if expected is None:
        assert value is None
    else:
        assert value == {**expected, "rotation": 0, "rectanglelabels": ["Car"]}


def test_point_conversion() -> None:
    assert point_value(PointAnswer("Eye", 50, 25), 200, 100, 2) == {"x": 25.0, "y": 25.0, "width": 1.0,
                                                                    "keypointlabels": ["Eye"]}
    assert point_value(PointAnswer("Eye", 201, 25), 200, 100, 2) is None


def test_image_project_through_the_server(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={
        "boxes": [{"label": "car", "x_min": 20, "y_min": 10, "x_max": 120, "y_max": 60},
                  {"label": "Truck", "x_min": 0, "y_min": 0, "x_max": 5, "y_max": 5},
                  {"label": "Person", "x_min": 500, "y_min": 500, "x_max": 600, "y_max": 600}],
        "points": [{"label": "Eye", "x": 50, "y": 25}],
        "scene": "street", "caption": ["A red picture."],
    }))
    body = {"label_config": IMAGE_CONFIG, "tasks": [{"id": 1, "data": {"image": data_url(200, 100)}}]}
    client = make_client(llm_model="openai/gpt-4o-mini")
    assert client.post("/setup", json={"schema": IMAGE_CONFIG}).status_code == 200
    [result] = client.post("/predict", json=body).get_json()["results"]
    regions = {r["from_name"]: r for r in result["result"]}
    assert len(result["result"]) == 4  # unknown label and the box outside the image are dropped
    assert regions["boxes"]["value"] == {"x": 10.0, "y": 10.0, "width": 50.0, "height": 50.0, "rotation": 0,
                                         "rectanglelabels": ["Car"]}
    assert (regions["boxes"]["original_width"], regions["boxes"]["original_height"]) == (200, 100)
    assert regions["points"]["value"]["x"] == 25.0 and regions["points"]["to_name"] == "image"
    assert regions["scene"]["value"] == {"choices": ["Street"]}
    assert regions["caption"]["value"] == {"text": ["A red picture."]}
    # The model received the image as a content part, and the pixel size in the prompt.
    user = llm.requests[0]["messages"][-1]["content"]
    assert user[1] == {"type": "image_url", "image_url": {"url": body["tasks"][0]["data"]["image"]}}
    assert "200 x 100 pixels" in user[0]["text"] and "top-left corner" in user[0]["text"]


def test_image_url_is_fetched_and_inlined_or_passed_through(make_client: Any, llm: FakeLLMServer) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    image = png(64, 32)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cat.png"
    try:
        llm.set_default(Reply(json={"boxes": [], "points": [], "scene": "Indoor", "caption": []}))
        body = {"label_config": IMAGE_CONFIG, "tasks": [{"id": 1, "data": {"image": url}}]}
        inline = make_client(llm_model="openai/gpt-4o-mini", allowed_media_hosts="127.0.0.1")
        [result] = inline.post("/predict", json=body).get_json()["results"]
        assert result["result"] == [{**result["result"][0], "value": {"choices": ["Indoor"]}}]
        sent = llm.requests[-1]["messages"][-1]["content"][1]["image_url"]["url"]
        assert sent == "data:image/png;base64," + base64.b64encode(image).decode()
        passing = make_client(llm_model="openai/gpt-4o-mini", allowed_media_hosts="127.0.0.1",
                              image_url_passthrough=True, cache_enabled=False)
        passing.post("/predict", json=body)
        assert llm.requests[-1]["messages"][-1]["content"][1]["image_url"]["url"] == url
        assert "64 x 32 pixels" in llm.requests[-1]["messages"][-1]["content"][0]["text"]
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("model", "mode", "status"),
    [("openai/gpt-3.5-turbo", "auto", 400), ("openai/gpt-4o-mini", "auto", 200), ("openai/gpt-4o-mini", "off", 400),
     ("hosted_vllm/my-private-model", "auto", 200), ("openai/gpt-3.5-turbo", "on", 200)],
)
def test_setup_refuses_an_image_project_on_a_text_model(make_client: Any, model: str, mode: str,
                                                        status: int) -> None:
    response = make_client(llm_model=model, llm_vision=mode).post("/setup", json={"schema": IMAGE_CONFIG})
    assert response.status_code == status
    if status == 400:
        assert "does not accept images" in response.get_json()["error"]["message"]


def test_bad_image_is_a_per_task_error(make_client: Any, llm: FakeLLMServer) -> None:
    body = {"label_config": IMAGE_CONFIG, "tasks": [
        {"data": {"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}},
        {"data": {"text": "no image field"}}]}
    first, second = make_client(llm_model="openai/gpt-4o-mini").post("/predict", json=body).get_json()["results"]
    assert "not an image" in first["error"] and "no image URL" in second["error"]
    assert llm.calls == 0


MULTI_CONFIG = """<View>
  <Text name="title" value="$title"/>
  <HyperText name="body" value="$html"/>
  <Paragraphs name="chat" value="$dialogue" layout="dialogue"/>
  <Choices name="topic" toName="title"><Choice value="Sports"/><Choice value="Tech"/></Choices>
  <Choices name="tone" toName="chat"><Choice value="Calm"/><Choice value="Angry"/></Choices>
  <TextArea name="summary" toName="body"/>
  <DateTime name="when" toName="body" only="date"/>
</View>"""


def test_several_inputs_each_control_on_its_own(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"topic": "Tech", "tone": "angry", "summary": ["A launch."],
                                "when": "2024-03-05T10:00"}))
    task = {"title": "New phone launched", "html": "<h1>Launch</h1><p>It shipped on <b>March 5</b>.</p>"
            "<script>alert(1)</script>",
            "dialogue": [{"author": "Ann", "text": "Where is it?"}, {"author": "Bob", "text": "Late again!"}]}
    [result] = make_client().post("/predict", json={"label_config": MULTI_CONFIG, "tasks": [{"data": task}]}
                                  ).get_json()["results"]
    values = {r["from_name"]: (r["to_name"], r["value"]) for r in result["result"]}
    assert values == {"topic": ("title", {"choices": ["Tech"]}), "tone": ("chat", {"choices": ["Angry"]}),
                      "summary": ("body", {"text": ["A launch."]}), "when": ("body", {"datetime": "2024-03-05"})}
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "<title>\nNew phone launched\n</title>" in prompt
    assert "Launch\nIt shipped on March 5." in prompt and "alert" not in prompt
    assert "Ann: Where is it?\nBob: Late again!" in prompt
    assert "written YYYY-MM-DD" in prompt


@pytest.mark.parametrize(
    ("only", "given", "stored"),
    [("date", "2024-03-05", "2024-03-05"), ("time", "09:30", "09:30"), ("", "2024-03-05 09:30", "2024-03-05T09:30"),
     ("year", "2024", "2024"), ("month", "2024-03", "2024-03")],
)
def test_datetime_formats(make_client: Any, llm: FakeLLMServer, only: str, given: str, stored: str) -> None:
    config = (f'<View><Text name="t" value="$t"/><DateTime name="d" toName="t"'
              f'{f" only={json.dumps(only)}" if only else ""}/></View>')
    llm.set_default(Reply(json={"d": given}))
    [result] = make_client().post("/predict", json={"label_config": config, "tasks": [{"data": {"t": "x"}}]}
                                  ).get_json()["results"]
    assert result["result"][0]["value"] == {"datetime": stored}


def test_router_names_are_checked_through_their_deployments(make_client: Any, tmp_path: Any,
                                                            llm: FakeLLMServer) -> None:
    import yaml

    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({"model_list": [
        {"model_name": "texty", "litellm_params": {"model": "openai/gpt-3.5-turbo", "api_base": llm.base_url}},
        {"model_name": "eyes", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": llm.base_url}},
    ]}))
    text_only = make_client(llm_router_config=str(path), llm_model="texty", llm_api_base=None)
    response = text_only.post("/setup", json={"schema": IMAGE_CONFIG})
    assert response.status_code == 400 and "texty does not accept images" in response.get_json()["error"]["message"]
    seeing = make_client(llm_router_config=str(path), llm_model="eyes", llm_api_base=None)
    assert seeing.post("/setup", json={"schema": IMAGE_CONFIG}).status_code == 200
