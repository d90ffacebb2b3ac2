"""`llm-backend doctor`: the connection checks behind most support threads, each with its fix.

Checks run in order: settings, the model (a 1-token call, then a small real config asked in each
output mode: which modes it follows, which repairs reading its replies took, the LLM_OUTPUT_MODE to set),
Label Studio (reachable and really Label Studio, the token's kind by Label Studio's answer, whether it accepts
the backend's URL: see label_studio_view.py), the label config (controls, toName, $field),
and which backend URL Label Studio should use from where it runs. Nothing secret is printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from ..core.causes import classify_failure
from ..core.config import ObjectTag, parse_label_config
from ..core.controls import SPECS
from ..core.demo import is_demo
from ..core.objects import OBJECT_TAGS
from ..errors import LLMBackendError, SettingsError
from ..label_studio import LabelStudioClient
from ..models.client import CompletionClient, LiteLLMClient, LLMRequest, load_litellm
from ..models.context import SETTING_SOURCE, ContextWindows, map_window
from ..models.fastpath import FastPath
from ..models.router import load_routing
from ..models.vision import vision_support
from ..netcheck import Unreachable, is_local, why_unreachable
from ..redact import redact, register_secrets
from ..settings import Settings, load_settings
from .label_studio_view import LOCAL_SETTINGS, backend_reach, token_finding, what_answers
from .probe import ModeResult, probe_modes, recommend
from .trust_doctor import calibration_checks


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def safe_url(url: str) -> str:
    """The URL without any user:password@ part."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_llm(settings: Settings, client: CompletionClient | None = None) -> Iterator[Check]:
    if is_demo(settings.llm_model):
        yield Check("model", "warn", "LLM_MODEL=demo answers from simple rules, not a language model: its "
                                     "predictions show how the backend works, not what a model would say",
                    "set LLM_MODEL to a real model (see the README, \"Choosing a model\")")
        return
    try:
        routing = load_routing(settings)
    except SettingsError as exc:
        yield Check("routing file", "fail", exc.message, "fix LLM_ROUTER_CONFIG or LLM_MODEL/LLM_CASCADE")
        return
    quick = settings.model_copy(update={"llm_max_retries": 0, "llm_timeout": min(settings.llm_timeout, 60)})
    client = client or routing.client(quick) or LiteLLMClient(
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout=quick.llm_timeout, max_retries=0, fast=FastPath(enabled=settings.llm_fast_path == "on"),
    )
    # With a routing file each deployment has its own api_base; one set here would bypass the Router.
    api_base = None if routing.config is not None else settings.api_base
    where = f"{settings.llm_model}" + (f" at {safe_url(api_base)}" if api_base else " (routing file)"
                                       if routing.config is not None else "")
    ping = LLMRequest(settings.llm_model, ({"role": "user", "content": "Reply with the single word: yes"},),
                      max_tokens=1, api_base=api_base)
    load_litellm()  # seconds on a first import, which are not the model's answer time
    started = time.monotonic()
    try:
        client.complete(ping)
    except LLMBackendError as exc:
        cause = classify_failure(exc.code, exc.message)  # the fix `predict`, `plan` and the status page give too
        yield Check("model reachable", "fail", f"{where}: {exc.message}", cause.fix)
        return
    yield Check("model reachable", "pass", f"{where} answered in {time.monotonic() - started:.2f} s")
    path_of = getattr(client, "path_of", None)
    if path_of is not None:
        choice = path_of(ping)
        yield Check("model calls", "pass", f"{choice.path}: {choice.why}")
    yield from check_output_modes(settings, list(probe_modes(quick, client, routing.routes)))


def check_output_modes(settings: Settings, results: list[ModeResult]) -> Iterator[Check]:
    """One check per output mode, then the setting: the configured mode must be followed."""
    current = settings.llm_output_mode
    for result in results:
        status = "pass" if result.followed else ("fail" if result.mode == current else "warn")
        yield Check(f"output mode {result.mode}", status, result.detail)
    best = recommend(results)
    if best is None:
        yield Check("LLM_OUTPUT_MODE", "fail", f"{settings.llm_model} followed no output mode",
                    "use a model that follows instructions or structured output; for a reasoning model raise "
                    "LLM_MAX_TOKENS; see README \"Using local models\"")
        return
    chosen = next(result for result in results if result.mode == current)
    if chosen.followed and (not chosen.repairs or best.repairs):
        yield Check("LLM_OUTPUT_MODE", "pass", f"LLM_OUTPUT_MODE={current} suits this model")
    elif chosen.followed:
        yield Check("LLM_OUTPUT_MODE", "warn", f"LLM_OUTPUT_MODE={current} works, but its replies needed repairs",
                    f"set LLM_OUTPUT_MODE={best.mode} ({best.detail})")
    else:
        yield Check("LLM_OUTPUT_MODE", "fail", f"the model does not follow LLM_OUTPUT_MODE={current}",
                    f"set LLM_OUTPUT_MODE={best.mode} ({best.detail})")


def check_context(settings: Settings) -> Check:
    """Where the model's context window comes from: long texts are split to fit it (engine/longtext.py)."""
    if is_demo(settings.llm_model):
        return Check("context window", "skip", "the demo model reads texts of any length")
    try:
        routing = load_routing(settings)
    except SettingsError:
        return Check("context window", "skip", "the routing file did not load (see above)")
    windows = ContextWindows.from_model_list(settings.llm_context_tokens,
                                             routing.config.model_list if routing.config else ())
    window = windows.window(settings.llm_model)
    if window is None:
        return Check("context window", "warn",
                     f"unknown for {settings.llm_model}: a long text is sent whole until the provider's error names "
                     "the window, then split", "set LLM_CONTEXT_TOKENS to the model's context length (vLLM: "
                     "--max-model-len, Ollama: num_ctx)")
    mapped = map_window(settings.llm_model)
    # A setting that overrides the map: the served model is not the one the map knows under that name.
    overrides = f" (LiteLLM's map says {mapped:,} for this name; the setting wins)" \
        if window.source == SETTING_SOURCE and mapped and mapped != window.tokens else ""
    return Check("context window", "pass", f"{window.describe(settings.llm_model)}{overrides}; longer texts are split "
                                           f"into parts that fit (LONG_TEXT_STRATEGY={settings.long_text_strategy}, "
                                           f"NER_PASSES={settings.ner_passes})")


def check_label_studio(settings: Settings) -> Iterator[Check]:
    if not settings.ls_url:
        yield Check("Label Studio", "skip", "LABEL_STUDIO_URL is not set",
                    "set it to fetch task files (/data/upload/..., cloud storage) and for label-project")
        return
    url = safe_url(settings.ls_url)
    try:
        health = requests.get(f"{settings.ls_url}/health", timeout=10)
    except requests.RequestException as exc:
        failure = why_unreachable(exc, settings.ls_url, 10)
        yield Check("Label Studio reachable", "fail", f"{url}: {failure.detail}",
                    label_studio_hint(settings.ls_url, failure, Path("/.dockerenv").exists()))
        return
    if health.status_code != 200:
        yield Check("Label Studio reachable", "fail", f"{url}/health answered HTTP {health.status_code}",
                    "is LABEL_STUDIO_URL the Label Studio web address (not the backend's)?")
        return
    found = what_answers(settings.ls_url, health)
    yield Check("Label Studio reachable", found.status, url if found.status == "pass" else found.detail, found.fix)
    if found.status != "pass":
        return
    if settings.label_studio_api_key is None:
        yield Check("Label Studio token", "warn", "LABEL_STUDIO_API_KEY is not set",
                    "files under /data/upload need it: Label Studio -> Account & Settings -> Personal Access "
                    "Token (or Legacy Token)")
        return
    client = LabelStudioClient(settings.ls_url, settings.label_studio_api_key.get_secret_value(), timeout=10)
    token = token_finding(client)
    yield Check("Label Studio token", token.status, token.detail, token.fix)


def check_backend_reach(settings: Settings, backend_url: str | None) -> Check:
    """Whether Label Studio would connect to the backend's URL (the one you give it in Settings -> Model)."""
    assert settings.ls_url and settings.label_studio_api_key
    client = LabelStudioClient(settings.ls_url, settings.label_studio_api_key.get_secret_value(), timeout=10)
    if backend_url is None and settings.ls_url and is_local(settings.ls_url):
        backend_url = f"http://localhost:{settings.port}"  # Label Studio on this machine, as the README has it
    if backend_url is None:
        return Check("Label Studio -> backend", "skip", "Label Studio runs elsewhere: which URL it uses for this "
                                                        "backend is not known here",
                     "pass --backend-url URL (the URL you give Label Studio) to check that Label Studio accepts it")
    found = backend_reach(client, backend_url)
    return Check("Label Studio -> backend", found.status, found.detail, found.fix)


def label_studio_hint(url: str, failure: Unreachable, in_container: bool) -> str:
    """The fix for an unreachable Label Studio, with the evidence behind any guess about containers."""
    if failure.kind == "no_such_host":
        return ("check the host name in LABEL_STUDIO_URL; a docker compose service name (label-studio) resolves only "
                "inside that compose network")
    start = "start Label Studio (label-studio start), or set LABEL_STUDIO_URL to the address this machine reaches it at"
    if is_local(url) and in_container:
        return (f"{start}. If Label Studio runs on the host or in another container: this backend runs in a "
                "container (/.dockerenv exists) and LABEL_STUDIO_URL points at localhost, which is this "
                "container itself; use the compose service name (http://label-studio:8080) or "
                "http://host.docker.internal:8080")
    return start


def predictable_controls() -> str:
    """What the control registry predicts, by object: the list grows with it."""
    groups: dict[str, list[str]] = {}
    for kind in OBJECT_TAGS.values():
        tags = ", ".join(spec.listed_as for spec in SPECS.values()
                         if spec.accepts(ObjectTag(kind.name, kind.name, "$x")))
        if tags:
            groups.setdefault(tags, []).append(f"<{kind.tag}>")
    return "; ".join(f"on {_either(objects)}: {tags}" for tags, objects in groups.items())


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_config(path: Path | None, settings: Settings | None = None) -> Iterator[Check]:
    if path is None:
        yield Check("label config", "skip", "no --config given", "pass --config label_config.xml to check one")
        return
    try:
        config = parse_label_config(path.read_text(encoding="utf-8"))
    except (OSError, LLMBackendError) as exc:
        yield Check("label config", "fail", f"{path}: {getattr(exc, 'message', exc)}",
                    "fix the XML; it must be the project's Labeling Interface code")
        return
    controls = ", ".join(f"{c.name} <{c.kind}> -> {c.to_name[0]} "
                         f"(data.{config.objects[c.to_name[0]].data_key})" for c in config.controls)
    yield Check("label config", "pass" if config.controls else "fail",
                f"predicts: {controls or 'nothing'}",
                "" if config.controls else f"add a control this backend predicts: {predictable_controls()}")
    for skipped in config.skipped:
        yield Check(f"control {skipped.name}", "warn", f"<{skipped.tag}> skipped: {skipped.reason}")
    for warning in config.warnings:
        yield Check("label config", "warn", warning)
    if settings is not None and config.needs_vision:
        support = vision_support(settings.llm_model, settings.llm_vision)
        status = {True: "pass", False: "fail", None: "warn"}[support]
        detail = {True: "accepts images", False: "does not accept images", None: "image support unknown"}[support]
        yield Check("vision model", status, f"{settings.llm_model} {detail}; the config labels images",
                    "" if support else "use a vision model or set LLM_VISION=on if this one reads images")


def backend_urls(settings: Settings) -> Check:
    port = settings.port
    lines = [
        f"Label Studio on this machine: http://localhost:{port} (Label Studio started with {LOCAL_SETTINGS})",
        f"Label Studio in the same docker compose: http://ml-backend:{port}",
        f"Label Studio in Docker, backend on the host: http://host.docker.internal:{port} (Mac/Windows), "
        f"http://172.17.0.1:{port} (Linux)",
    ]
    where = "this backend runs in a container" if Path("/.dockerenv").exists() else "this backend runs on the host"
    return Check("backend URL for Label Studio", "pass", f"{where}; connect with: " + "; ".join(lines))


def run_doctor(config_path: Path | None, load: Callable[[], Settings] = load_settings,
               backend_url: str | None = None) -> list[Check]:
    try:
        settings = load()
    except SettingsError as exc:
        return [Check("settings", "fail", exc.message, "fix the environment variables named above")]
    register_secrets(settings.secret_values())
    checks = [Check("settings", "pass", f"LLM_MODEL={settings.llm_model}, PORT={settings.port}, "
                                        f"cache={'on' if settings.cache_enabled else 'off'}")]
    checks += list(check_llm(settings))
    checks.append(check_context(settings))
    label_studio = list(check_label_studio(settings))
    checks += label_studio
    if [check.status for check in label_studio] == ["pass", "pass"]:  # reachable, and the token works
        checks.append(check_backend_reach(settings, backend_url))
    checks += list(check_config(config_path, settings))
    checks.append(backend_urls(settings))
    checks += [Check(*row) for row in calibration_checks(settings)]
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(redact(f"[{check.status.upper():4}] {check.name}: {check.detail}"))
        if check.fix and check.status != "pass":
            lines.append(redact(f"       fix: {check.fix}"))
    failed = sum(check.failed for check in checks)
    lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
    return "\n".join(lines)

