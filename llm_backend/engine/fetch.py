"""Fetching task media that is a reference instead of the data itself, safely.

Label Studio tasks often hold `/data/upload/...`, `/data/local-files/?d=...`, a cloud URI
(`s3://`, `gs://`, `azure-blob://`) or a plain URL. We fetch:
- from Label Studio's own host, with Label Studio credentials (and only there);
- from hosts the operator lists in ALLOWED_MEDIA_HOSTS, without credentials;
- never from link-local or cloud-metadata addresses, whatever the task says, and never by
  following a redirect somewhere the first two rules would refuse.
Every failure is a TaskError that names the URL, the HTTP status and the fix.
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import TaskError
from ..label_studio import FIX, LabelStudioClient

CLOUD_SCHEMES = ("s3://", "gs://", "azure-blob://", "azure-spi://")
LS_PATHS = ("/data/upload/", "/data/local-files/", "/storage-data/")
MAX_REDIRECTS = 3
# Cloud metadata services that are not link-local (link-local is refused wholesale).
METADATA_ADDRESSES = {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}


@dataclass(frozen=True)
class Media:
    url: str
    content: bytes
    content_type: str

    def text(self) -> str:
        charset = "utf-8"
        for part in self.content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")


def is_reference(value: str) -> bool:
    """Values that point at media rather than being the text itself."""
    return value.startswith(LS_PATHS) or value[:32].lower().startswith(CLOUD_SCHEMES)  # not all of a long text


def _forbidden_address(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        return f"cannot resolve {host} ({exc.strerror})"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address.is_link_local or address.is_multicast or address.is_unspecified or address in METADATA_ADDRESSES:
            return f"{host} resolves to {address}, a link-local/metadata address"
    return None


class MediaFetcher:
    def __init__(self, *, label_studio: LabelStudioClient | None, label_studio_url: str | None,
                 allowed_hosts: tuple[str, ...] = (), max_bytes: int = 20 * 1024 * 1024, timeout: float = 15.0,
                 session: requests.Session | None = None) -> None:
        self.label_studio = label_studio
        self.label_studio_url = (label_studio_url or "").rstrip("/") or None
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.session = session or requests.Session()

    def resolve(self, value: str, task_id: object) -> str:
        """The absolute URL to fetch for a task value."""
        if value.lower().startswith(CLOUD_SCHEMES):
            if not self.label_studio_url:
                raise TaskError(f"task data {value[:200]} is a cloud storage URI; set LABEL_STUDIO_URL and "
                                "LABEL_STUDIO_API_KEY so the backend can ask Label Studio to resolve it")
            encoded = base64.urlsafe_b64encode(value.encode()).decode()
            return f"{self.label_studio_url}/tasks/{task_id}/resolve/?fileuri={encoded}"
        if value.startswith("/"):
            if not self.label_studio_url:
                raise TaskError(f"task data {value[:200]} is a Label Studio path; set LABEL_STUDIO_URL (as the "
                                "backend reaches Label Studio) and LABEL_STUDIO_API_KEY")
            return urljoin(self.label_studio_url + "/", value)
        return value

    def _on_label_studio(self, url: str) -> bool:
        if not self.label_studio_url:
            return False
        ours, theirs = urlsplit(self.label_studio_url), urlsplit(url)
        return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme, theirs.hostname, theirs.port)

    def check(self, url: str) -> bool:
        """Raise TaskError unless the URL may be fetched; return whether it is Label Studio's."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TaskError(f"refusing to fetch {url[:200]}: only http(s) URLs are fetched")
        host = parts.hostname.lower()
        own = self._on_label_studio(url)
        if not own and not any(fnmatch.fnmatch(host, pattern) for pattern in self.allowed_hosts):
            raise TaskError(f"refusing to fetch {url[:200]}: {host} is neither Label Studio's host nor in "
                            "ALLOWED_MEDIA_HOSTS")
        problem = _forbidden_address(host, parts.port or (443 if parts.scheme == "https" else 80))
        if problem:
            raise TaskError(f"refusing to fetch {url[:200]}: {problem}")
        return own

    def fetch(self, value: str, task_id: object) -> Media:
        url = self.resolve(value, task_id)
        for _hop in range(MAX_REDIRECTS + 1):
            own = self.check(url)
            response = self._get(url, own)
            if response.is_redirect:
                location = response.headers.get("Location", "")
                response.close()
                url = urljoin(url, location)
                continue
            return self._read(url, response, own)
        raise TaskError(f"fetching {value[:200]} redirected more than {MAX_REDIRECTS} times")

    def fetch_text(self, value: str, task_id: object) -> str:
        return self.fetch(value, task_id).text()

    def _get(self, url: str, own: bool) -> requests.Response:
        try:
            if own and self.label_studio is not None:
                return self.label_studio.request("GET", url, stream=True, timeout=self.timeout)
            return self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise TaskError(f"could not fetch {url[:200]}: {type(exc).__name__}") from None
        except Exception as exc:  # LabelStudioAPIError: unreachable Label Studio
            raise TaskError(f"could not fetch {url[:200]}: {getattr(exc, 'message', type(exc).__name__)}") from None

    def _read(self, url: str, response: requests.Response, own: bool) -> Media:
        with response:
            if response.status_code >= 400:
                fix = f"; {FIX}" if own and response.status_code in (401, 403) else ""
                if own and self.label_studio is None:
                    fix = "; set LABEL_STUDIO_API_KEY so the backend can authenticate to Label Studio"
                raise TaskError(f"could not fetch {url[:200]}: HTTP {response.status_code}{fix}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise TaskError(f"{url[:200]} is {int(declared)} bytes, over MEDIA_MAX_BYTES={self.max_bytes}")
            chunks, size = [], 0
            try:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TaskError(f"{url[:200]} is larger than MEDIA_MAX_BYTES={self.max_bytes}")
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise TaskError(f"could not fetch {url[:200]}: {type(exc).__name__}") from None
            return Media(url, b"".join(chunks), response.headers.get("Content-Type", "application/octet-stream"))
