"""Keep configured secrets out of logs and out of anything sent to clients.

Providers sometimes echo credentials in error messages, and tracebacks carry whatever the
exception said. Every log record is scrubbed at creation (a record factory, so it holds for
every handler, including gunicorn's and test capture), and error texts are scrubbed before they
leave the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

MASK = "***"
_MIN_SECRET = 6  # shorter values would mask ordinary words
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def register_secrets(values: Iterable[str | None]) -> None:
    """Add secrets to scrub (process-wide) and make sure log records are scrubbed."""
    global _secrets
    with _lock:
        merged = set(_secrets) | {v for v in values if v and len(v) >= _MIN_SECRET}
        _secrets = tuple(sorted(merged, key=len, reverse=True))
    _install_record_factory()


def _install_record_factory() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not _secrets:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must still log something
            message = str(record.msg)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters reuse exc_text when it is set: give them the scrubbed traceback.
            record.exc_text = redact(formatter.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
