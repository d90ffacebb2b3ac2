"""Who may call the backend: basic auth for the protocol, a shared secret for webhooks.

Label Studio sends `/webhook` without basic auth (so webhooks carry `X-Webhook-Secret` instead), and
health checks carry no credentials at all. Comparisons are constant-time.
"""

from __future__ import annotations

import hmac

from ..settings import Settings

# Probes from container runtimes and load balancers carry no credentials. The status page (/) is not one:
# it shows what the backend is doing, so it is behind basic auth like the protocol.
OPEN_PATHS = ("/health", "/favicon.ico")  # the icon tells nothing, and a browser asks for it without credentials


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def webhook_refusal(settings: Settings, secret_header: str | None) -> str | None:
    """Why a webhook is refused, or None when it may pass."""
    if settings.webhook_secret is None:
        return None
    if _same(secret_header or "", settings.webhook_secret.get_secret_value()):
        return None
    return "missing or wrong X-Webhook-Secret header"


def basic_auth_refusal(settings: Settings, username: str | None, password: str | None) -> str | None:
    """Why a protocol call is refused, or None when basic auth is off or the credentials match."""
    if not (settings.basic_auth_user and settings.basic_auth_pass):
        return None
    user_ok = _same(username or "", settings.basic_auth_user)
    pass_ok = _same(password or "", settings.basic_auth_pass.get_secret_value())
    if username is not None and user_ok and pass_ok:
        return None
    return "basic auth required (BASIC_AUTH_USER/BASIC_AUTH_PASS)"
