"""llm-backend: an LLM-driven Label Studio ML backend.

The package face stays light: `import llm_backend` loads neither Flask nor LiteLLM. The layers,
from the inside out:

    core/      pure: label config, control specs, answer schema, alignment, regions, scores, evaluation
    models/    the model edge: LiteLLM client, retries, routing file, vision support
    engine/    one task and batches of them: prompts, inputs, cache, predictor, cascade, stores
    services   the object graph, built once (build_services)
    web/       the Label Studio protocol over Flask (create_app) and gunicorn
    offline/   task files, whole projects, evaluation reports, doctor
    cli/       the `llm-backend` command
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings, load_settings

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "build_services", "create_app", "load_settings"]

if TYPE_CHECKING:
    from .services import build_services
    from .web.app import create_app


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that importing the package does not import Flask.
    if name == "create_app":
        from .web.app import create_app

        return create_app
    if name == "build_services":
        from .services import build_services

        return build_services
    raise AttributeError(f"module 'llm_backend' has no attribute {name!r}")
