"""Why a URL does not answer, in words a user can act on (refused, no such host, timeout, TLS).

Shared by the startup checks (`models/preflight.py`) and `doctor`, so both name the same cause.
Any HTTP answer, whatever its status, means something is listening: that is "reachable".
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import requests


@dataclass(frozen=True)
class Unreachable:
    kind: str  # "refused" | "no_such_host" | "timeout" | "tls" | "other"
    detail: str  # e.g. "connection refused: nothing listens on 127.0.0.1:8000"


def is_local(url: str) -> bool:
    """Whether `url` points at this machine (or, in a container, at the container itself)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.")


def host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def why_unreachable(exc: requests.RequestException, url: str, timeout: float) -> Unreachable:
    where = host_port(url)
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return Unreachable("tls", f"TLS failed at {where}: {text[:160]}")
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout)):
        return Unreachable("timeout", f"no answer from {where} within {timeout:g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if any(sign in text for sign in ("Name or service not known", "NameResolution", "nodename nor servname",
                                         "No address associated", "Temporary failure in name resolution")):
            return Unreachable("no_such_host", f"the host name {urlsplit(url).hostname} does not resolve")
        if "refused" in text.lower():
            return Unreachable("refused", f"connection refused: nothing listens on {where}")
        return Unreachable("other", f"cannot connect to {where} ({type(exc).__name__})")
    return Unreachable("other", f"{type(exc).__name__}: {text[:160]}")


def unreachable(url: str, timeout: float) -> Unreachable | None:
    """None when something answers at `url` (any HTTP status), else why nothing does."""
    try:
        requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return why_unreachable(exc, url, timeout)
    return None
