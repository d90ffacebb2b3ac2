"""Fuzz every route of the running server (real gunicorn) from its own OpenAPI description:
no 5xx, and every response matches the spec."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from testkit.llm_server import FakeLLMServer
from tests.conftest import REPO, BackendProcess, backend_env

# One server for the module, so its tests share one xdist worker (on several, each would start its own).
pytestmark = pytest.mark.xdist_group("fuzz_openapi")


@pytest.fixture(scope="module")
def fuzz_backend(llm_server: FakeLLMServer) -> Iterator[BackendProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        env = backend_env(llm_server, Path(tmp), LLM_API_KEY="sk-fuzz-secret-value", LLM_MAX_RETRIES="0",
                          THREADS="4")
        backend = BackendProcess(env, Path(tmp) / "backend.log")
        backend.wait_until_listening()
        yield backend
        backend.stop()


def _operations() -> list[str]:
    from llm_backend.web.openapi import openapi_spec

    spec = openapi_spec("test")
    # /openapi.json takes no input; schemathesis loading it (below) is its test.
    return [f"{method.upper()} {path}" for path, methods in spec["paths"].items() for method in methods
            if path != "/openapi.json"]


@pytest.mark.parametrize("operation", _operations())
def test_api_conforms_to_its_spec(operation: str, fuzz_backend: BackendProcess) -> None:
    # Imported here: at module level every test worker would import schemathesis while collecting.
    import schemathesis
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # schemathesis' pytest plugin does not load under pytest 9: drive its strategies with hypothesis directly.
    api = schemathesis.openapi.from_url(f"{fuzz_backend.url}/openapi.json")
    method, path = operation.split(" ", 1)
    [target] = [op.ok() for op in api.get_all_operations()
                if op.ok().method.upper() == method and op.ok().path == path]

    @given(case=target.as_strategy())
    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")), deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=True)
    def run(case: Any) -> None:
        # A schema-valid body can still hold an unusable label config (XML validity is not expressible
        # in JSON schema): a 400 with a message is the right answer there, not a spec violation.
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500
        assert "Traceback" not in response.text and "sk-fuzz-secret-value" not in response.text
        assert str(REPO) not in response.text

    run()
