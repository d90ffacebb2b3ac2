"""Label Studio's REST API with either kind of token.

`LABEL_STUDIO_API_KEY` may hold a Legacy Token (40 hex characters, sent as `Token <key>`) or a
Personal Access Token: a JWT refresh token that is exchanged at `POST /api/token/refresh/` for a
short-lived access token sent as `Bearer <access>`, refreshed before it expires and once more on a
401. Which one it is is detected from its shape, so users paste whatever Label Studio gave them.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests

from .errors import LLMBackendError

log = logging.getLogger(__name__)

TokenKind = Literal["legacy", "personal_access_token"]
# Label Studio's own names for its two kinds of token, and where its UI shows them.
TOKEN_WHERE = "Label Studio: Account & Settings -> Personal Access Token, or Legacy Token"
FIX = f"check LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY ({TOKEN_WHERE})"


class LabelStudioAPIError(LLMBackendError):
    status = 502
    code = "label_studio_error"

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


def _jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def token_kind(token: str) -> TokenKind:
    """A JWT (three base64url segments with claims) is a Personal Access Token; anything else a Legacy Token."""
    return "personal_access_token" if _jwt_claims(token) is not None else "legacy"


def has_version(task: dict[str, Any], version: str) -> bool:
    """Whether a Data Manager task row lists `version` among its predictions' model versions (exactly:
    the Data Manager's "contains" filter matches substrings)."""
    versions = task.get("predictions_model_versions") or ""
    if isinstance(versions, str):
        versions = versions.split(",")
    return version in {str(v).strip() for v in versions}


class LabelStudioClient:
    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self._key = api_key.strip()
        self.kind: TokenKind = token_kind(self._key)
        self.timeout = timeout
        self.session = session or requests.Session()
        self._access: str | None = None
        self._access_expires = 0.0
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    def owns(self, url: str) -> bool:
        """Whether `url` points at this Label Studio (same scheme, host and port)."""
        ours, theirs = urlsplit(self.url), urlsplit(url)
        return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme, theirs.hostname, theirs.port)

    def absolute(self, path_or_url: str) -> str:
        return urljoin(self.url + "/", path_or_url)

    def _refresh_access(self) -> str:
        try:
            response = self.session.post(f"{self.url}/api/token/refresh/", json={"refresh": self._key},
                                         timeout=self.timeout)
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise LabelStudioAPIError(
                f"Label Studio refused the Personal Access Token (HTTP {response.status_code} from "
                f"/api/token/refresh/); it may be revoked or from another instance; {FIX}",
                http_status=response.status_code,
            )
        access = response.json().get("access")
        if not isinstance(access, str):
            raise LabelStudioAPIError("Label Studio's /api/token/refresh/ answered without an access token")
        claims = _jwt_claims(access) or {}
        # Refresh a little early so a request never leaves with a token about to expire.
        self._access_expires = float(claims.get("exp", time.time() + 240)) - 30
        self._access = access
        return access

    def auth_header(self, *, force_refresh: bool = False) -> str:
        if self.kind == "legacy":
            return f"Token {self._key}"
        with self._lock:
            if force_refresh or self._access is None or time.time() >= self._access_expires:
                self._refresh_access()
            return f"Bearer {self._access}"

    def request(self, method: str, path_or_url: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        """A request with auth; a 401 with a PAT refreshes the access token once and retries."""
        url = self.absolute(path_or_url)
        if not self.owns(url):
            raise LabelStudioAPIError(f"refusing to send Label Studio credentials to {url}")
        extra_headers = kwargs.pop("headers", {})
        timeout = kwargs.pop("timeout", self.timeout)
        for attempt in (1, 2):
            headers = {**extra_headers, "Authorization": self.auth_header(force_refresh=attempt == 2)}
            try:
                response = self.session.request(method, url, headers=headers, timeout=timeout, stream=stream,
                                                allow_redirects=False, **kwargs)
            except requests.RequestException as exc:
                raise self._unreachable(exc) from None
            if response.status_code == 401 and self.kind == "personal_access_token" and attempt == 1:
                continue
            return response
        return response

    def _unreachable(self, exc: Exception) -> LabelStudioAPIError:
        return LabelStudioAPIError(f"cannot reach Label Studio at {self.url} ({type(exc).__name__}); {FIX}")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            detail = response.text[:300].replace("\n", " ")
            hint = f"; {FIX}" if response.status_code in (401, 403) else ""
            raise LabelStudioAPIError(f"Label Studio answered HTTP {response.status_code} to {method} {path}: "
                                      f"{detail}{hint}", http_status=response.status_code)
        return response.json() if response.content else None

    def whoami(self) -> dict[str, Any]:
        return dict(self.json("GET", "/api/current-user/whoami"))

    def project(self, project_id: int | str) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/projects/{project_id}"))

    def predictions(self, *, project: int | str | None = None, task: int | str | None = None) -> list[dict[str, Any]]:
        """Every stored prediction of a project or of one task (`GET /api/predictions`, not paginated)."""
        params = {key: value for key, value in (("project", project), ("task", task)) if value is not None}
        body = self.json("GET", "/api/predictions", params=params)
        return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []

    def tasks(self, project_id: int | str, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every task of a project, page by page."""
        page, seen = 1, 0
        while True:
            response = self.request("GET", "/api/tasks", params={"project": project_id, "page": page,
                                                                 "page_size": page_size})
            if response.status_code == 404 and page > 1:  # past the last page
                return
            body = self._checked(response, "GET /api/tasks")
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            yield from tasks
            seen += len(tasks)
            total = body.get("total") if isinstance(body, dict) else None
            if not tasks or (total is not None and seen >= total):
                return
            page += 1

    def task_page(self, project_id: int | str, query: dict[str, Any], page_size: int, *, fields: str | None = None
                  ) -> tuple[list[dict[str, Any]], int]:
        """One page of the Data Manager's task list for `query` (filters, ordering, selectedItems); (tasks, total).
        Label Studio 1.23.2 fills `predictions_model_versions` only with `fields="all"` (else it is "")."""
        params = {"project": project_id, "page": 1, "page_size": page_size, "query": json.dumps(query)}
        if fields:
            params["fields"] = fields
        body = self.json("GET", "/api/tasks", params=params)
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            raise LabelStudioAPIError("Label Studio's GET /api/tasks answered without a \"tasks\" list")
        return body["tasks"], int(body.get("total") or 0)

    def tasks_with_version(self, project_id: int | str, task_ids: list[int], model_version: str) -> set[int]:
        """Which of `task_ids` already hold a prediction of `model_version` (asked right now)."""
        found: set[int] = set()
        for start in range(0, len(task_ids), 100):
            chunk = task_ids[start:start + 100]
            query = {"selectedItems": {"all": False, "included": chunk}, "ordering": ["tasks:id"]}
            tasks, _total = self.task_page(project_id, query, len(chunk), fields="all")
            found |= {int(task["id"]) for task in tasks if has_version(task, model_version)}
        return found

    def import_predictions(self, project_id: int | str, items: list[dict[str, Any]]) -> int:
        """`POST /api/projects/{id}/import/predictions` (one bulk insert); raise if fewer were stored than sent."""
        if not items:
            return 0
        answer = self.json("POST", f"/api/projects/{project_id}/import/predictions", json=items)
        created = int((answer or {}).get("created", 0))
        if created != len(items):
            raise LabelStudioAPIError(
                f"Label Studio stored {created} of {len(items)} predictions for project {project_id} "
                "(it drops predictions that do not fit the project's label config; was it changed meanwhile?)"
            )
        return created

    def _checked(self, response: requests.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise LabelStudioAPIError(f"Label Studio answered HTTP {response.status_code} to {what}: "
                                      f"{response.text[:300]}", http_status=response.status_code)
        return response.json()
