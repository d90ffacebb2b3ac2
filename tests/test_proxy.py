"""Model calls honour the proxy settings a network requires (HTTP_PROXY/HTTPS_PROXY, NO_PROXY), on the fast
path as on LiteLLM's own (httpx reads them): a backend behind a corporate proxy must not find its calls
going straight out on one path only."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from llm_backend.models.client import LiteLLMClient, LLMRequest
from llm_backend.models.fastpath import FAST, FastPath
from testkit.forward_proxy import ForwardProxy
from testkit.llm_server import FakeLLMServer, Reply


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy().start()
    yield server
    server.stop()


def _ask(llm: FakeLLMServer) -> str:
    client = LiteLLMClient(api_key="sk-test", timeout=10, max_retries=0, fast=FastPath(enabled=True))
    request = LLMRequest("openai/test-model", ({"role": "user", "content": "Is this proxied?"},), max_tokens=16,
                         api_base=llm.base_url)
    assert client.path_of(request).path == FAST
    return client.complete(request).content


def test_the_fast_path_goes_through_the_proxy_the_environment_names(
        llm: FakeLLMServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    llm.add_rule("Is this proxied?", Reply(content="yes"))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert _ask(llm) == "yes"
    assert proxy.seen == [f"POST {llm.base_url}/chat/completions"]
    assert len(llm.requests) == 1


def test_no_proxy_sends_the_call_straight_to_the_server(
        llm: FakeLLMServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    llm.add_rule("Is this proxied?", Reply(content="yes"))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _ask(llm) == "yes"
    assert proxy.seen == []
    assert len(llm.requests) == 1


def test_the_proxy_url_s_credentials_are_sent_to_the_proxy(
        llm: FakeLLMServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    llm.add_rule("Is this proxied?", Reply(content="yes"))
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://labeller:s3cret@"))
    assert _ask(llm) == "yes"
    assert proxy.authorizations == ["Basic " + base64.b64encode(b"labeller:s3cret").decode()]
    assert "s3cret" not in str(llm.requests[0])  # the proxy's credentials stop at the proxy
