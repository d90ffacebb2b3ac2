"""Label Studio's side of the connection, for `doctor`: is LABEL_STUDIO_URL Label Studio at all, what kind of
token LABEL_STUDIO_API_KEY is by Label Studio's own answer, and will Label Studio connect to the backend's URL.

A default Label Studio refuses an ML backend on a private address: `POST /api/ml` answers 403 "URL resolves to
a reserved network address" unless it runs with ML_BLOCK_LOCAL_IP=false, and the backend's webhook is refused
the same way unless SSRF_PROTECTION_ENABLED=false too (with only the first, the model shows as connected, with
no webhook). Both are asked here without creating anything: the URL is sent with project 0, so a URL that
passes still ends in a 400 for the project, and one that is refused ends in the 403 naming the address block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from ..label_studio import LabelStudioAPIError, LabelStudioClient

LOCAL_SETTINGS = "ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false"
START = f"{LOCAL_SETTINGS} label-studio start"
TOKEN_PLACE = "Label Studio -> Account & Settings -> Personal Access Token"


@dataclass(frozen=True)
class Finding:
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""


def _detail(response: requests.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body)[:200] if isinstance(body, dict) else str(body)[:200]


def what_answers(url: str, health: requests.Response, timeout: float = 10) -> Finding:
    """Whether the server at LABEL_STUDIO_URL is Label Studio (its /api/version names a release), not, say, this
    backend, whose /health also answers {"status": "UP"}."""
    try:
        body = health.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "model_class" in body:
        return Finding("fail", f"{url} is an ML backend ({body.get('model_class')}), not Label Studio",
                       "set LABEL_STUDIO_URL to Label Studio's address (by default http://localhost:8080)")
    try:
        version = requests.get(f"{url}/api/version", timeout=timeout)
        release = version.json().get("release") if version.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        release = None
    if not isinstance(release, str):
        return Finding("fail", f"{url}/health answers, but {url}/api/version names no Label Studio release",
                       "is LABEL_STUDIO_URL the Label Studio web address (not the backend's, not a proxy's)?")
    return Finding("pass", f"Label Studio {release} at {url}")


def token_finding(client: LabelStudioClient) -> Finding:
    """The token's kind as Label Studio answered it: accepted as a Legacy Token or exchanged as a Personal Access
    Token, refused as a Legacy Token the organization disabled, or not a token Label Studio knows at all."""
    try:
        user = client.whoami()
    except LabelStudioAPIError as exc:
        return _refused(client, exc)
    who = user.get("email") or user.get("username") or "?"
    if client.kind == "personal_access_token":
        return Finding("pass", f"Personal Access Token valid for {who} (exchanged at /api/token/refresh/ for "
                               "access tokens, renewed before they expire)")
    return Finding("pass", f"Legacy Token valid for {who}")


def _refused(client: LabelStudioClient, exc: LabelStudioAPIError) -> Finding:
    message = exc.message
    if client.kind == "personal_access_token":
        return Finding("fail", f"Label Studio refused this Personal Access Token: {message}",
                       f"it is revoked, expired or from another Label Studio: create a new one ({TOKEN_PLACE})")
    if "legacy token authentication has been disabled" in message:
        return Finding("fail", "a Legacy Token, which this organization has disabled (Label Studio answered HTTP "
                               "401: \"legacy token authentication has been disabled\")",
                       f"create a Personal Access Token ({TOKEN_PLACE}) and set LABEL_STUDIO_API_KEY to it")
    if "Invalid token" in message:
        return Finding("fail", "Label Studio knows no such token (HTTP 401 \"Invalid token.\"): it is neither a "
                               "Legacy Token of this Label Studio nor a Personal Access Token (those are JWTs, "
                               "three dot-separated parts)",
                       f"copy the whole token again ({TOKEN_PLACE}), or the Legacy Token if the organization "
                       "allows them; check LABEL_STUDIO_URL is the instance that issued it")
    return Finding("fail", f"Label Studio refused the token: {message}", f"check LABEL_STUDIO_API_KEY ({TOKEN_PLACE})")


def backend_reach(client: LabelStudioClient, backend_url: str) -> Finding:
    """Whether Label Studio would connect to `backend_url` and create its webhook (asked with project 0: nothing
    is created either way)."""
    blocked = []
    probes = (("/api/ml", backend_url, "ML_BLOCK_LOCAL_IP=false"),
              ("/api/webhooks/", backend_url.rstrip("/") + "/webhook", "SSRF_PROTECTION_ENABLED=false"))
    for path, url, setting in probes:
        try:
            response = client.request("POST", path, json={"url": url, "project": 0})
        except LabelStudioAPIError as exc:
            return Finding("warn", f"could not ask Label Studio about {backend_url}: {exc.message}")
        if response.status_code == 403 and "reserved network address" in response.text:
            blocked.append((path, setting, _detail(response)))
        elif response.status_code in (401, 403):
            return Finding("warn", f"could not ask Label Studio about {backend_url}: POST {path} answered HTTP "
                                   f"{response.status_code} ({_detail(response)})")
    if not blocked:
        return Finding("pass", f"Label Studio accepts {backend_url} as a model URL and for its webhook")
    refused = "; ".join(f"POST {path}: HTTP 403 \"{detail}\"" for path, _setting, detail in blocked)
    missing = " and ".join(setting for _path, setting, _detail_text in blocked)
    return Finding("fail", f"Label Studio refuses {backend_url} ({refused}): a default Label Studio connects to no "
                           "ML backend on this machine or a private network",
                   f"restart Label Studio with {missing} (both settings are needed: with only "
                   f"ML_BLOCK_LOCAL_IP=false the model shows as connected but gets no webhook), e.g. `{START}`; "
                   "in Docker: -e ML_BLOCK_LOCAL_IP=false -e SSRF_PROTECTION_ENABLED=false")
