"""The `llm-backend` command: serve, doctor, prompts, and the batch commands (predict, label-project, eval)."""

from .main import main

__all__ = ["main"]
