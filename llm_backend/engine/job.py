"""What a task asks for (`PredictionJob`) and what one model request answered (`Answered`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.answer import Answer
from ..core.config import LabelConfig
from ..core.task_options import for_task
from ..core.usage import Usage
from ..models.client import Completion


@dataclass(frozen=True)
class PredictionJob:
    config: LabelConfig
    project: str | None
    task: dict[str, Any]
    instruction: str | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    fewshot: bool = True  # False: no examples in the prompt (the "without examples" evaluation)
    # time.time() by which the answer is wanted (a /predict's deadline; every deadline is on the wall clock, the one
    # clock the ledger shares between processes and hosts): transient failures are
    # retried until then. None (offline commands): LLM_MAX_RETRIES retries.
    deadline: float | None = None

    def __post_init__(self) -> None:
        # The config as this task shows it: options some controls take from the task's data.
        object.__setattr__(self, "config", for_task(self.config, self.task))


@dataclass(frozen=True)
class Answered:
    """A validated answer to one request: from the cache or a concurrent twin ("cached"), or paid for ("ok")."""

    status: str
    completion: Completion
    answer: Answer
    usage: Usage
