"""LiteLLM, imported once per process and only when a model is called.

`import litellm` takes seconds and hundreds of MB, so it happens lazily (or in a warm-up thread
started after gunicorn forks), never at import or in `create_app`: `/health` and `/setup` must
answer within Label Studio's 1 s and 3 s.
"""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import os
import threading
import time
from types import ModuleType

log = logging.getLogger(__name__)

_litellm_lock = threading.Lock()
_litellm: ModuleType | None = None


def litellm_version() -> str:
    """The installed distribution's version: LiteLLM has no reliable __version__ attribute."""
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def load_litellm() -> ModuleType:
    """Import LiteLLM once, offline-safe (no price-map download)."""
    global _litellm
    if _litellm is None:
        with _litellm_lock:
            if _litellm is None:
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                os.environ.setdefault("LITELLM_LOG", "ERROR")
                started = time.monotonic()
                # The import builds about 380,000 objects that live as long as the process. The cyclic collector
                # is off meanwhile (its passes would find next to nothing to free: ~11% of the import's CPU), and
                # afterwards every object the process tracks is frozen, out of every later full collection, each
                # of which would otherwise scan them all again (~0.2 s; measured on the 2-core sandbox). Frozen
                # objects are never collected: besides the import's, those alive at that moment (the app, its
                # stores) and the little cyclic garbage the import left (about 1,900 objects, measured).
                collecting = gc.isenabled()
                gc.disable()
                try:
                    import litellm
                finally:
                    gc.freeze()
                    if collecting:
                        gc.enable()

                litellm.suppress_debug_info = True
                _litellm = litellm
                log.info("LiteLLM %s loaded in %.1f s", litellm_version(), time.monotonic() - started)
    return _litellm


def litellm_loaded() -> bool:
    return _litellm is not None
