"""What a task asks the model: its inputs read, its few-shot examples chosen, the exact request rendered.

The request builder turns a task, its label config and the settings into the `LLMRequest` a run sends
(its `cache_key` keys the response cache) and into what region building needs beside the answer
(`RegionInputs`). It also names the version of what it builds (`model_version`): everything that shapes
a request, hashed. It sends nothing and caches nothing: that is the answer source's (engine/answer_source.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..core.align import AlignOptions
from ..core.config import LabelConfig
from ..core.regions import RegionInputs
from ..core.schema import json_schema_text, shared_json_schema
from ..errors import TaskError
from ..models.client import LLMRequest
from ..settings import Settings
from .examples import ExampleStore, Snapshot, select_examples
from .fetch import MediaFetcher
from .inputs import ImageInput, task_images, task_markup, task_texts
from .job import PredictionJob
from .prompts import PromptLibrary

LOGPROB_PROVIDERS = ("openai/", "hosted_vllm/", "azure/", "gpt-")


@dataclass(frozen=True)
class PreparedTask:
    """A task ready to send: the exact request (its `cache_key` keys the cache) and what its regions need."""

    request: LLMRequest
    inputs: RegionInputs


class RequestBuilder:
    """Task + config + settings -> the request a run sends, and the version naming all that shapes it."""

    def __init__(self, settings: Settings, prompts: PromptLibrary, fetcher: MediaFetcher | None = None,
                 examples: ExampleStore | None = None, routes: dict[str, tuple[str, ...]] | None = None) -> None:
        self.settings = settings
        self.prompts = prompts
        self.fetcher = fetcher
        self.examples = examples
        # Router model name -> its deployments' LiteLLM models (from LLM_ROUTER_CONFIG).
        self.routes: dict[str, tuple[str, ...]] = routes or {}
        self.align_options = AlignOptions(
            fuzzy_threshold=settings.align_fuzzy_threshold, all_occurrences=settings.ner_all_occurrences
        )

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str:
        """Stable while model, templates and config stay the same; changes when any of them changes."""
        model = model or self.settings.llm_model
        parts = {
            "model": model,
            "temperature": self.settings.llm_temperature,
            "max_tokens": self.settings.llm_max_tokens,
            "mode": self.settings.llm_output_mode,
            "config": config.fingerprint,
            "prompts": self.prompts.fingerprint(project),
            "align": [self.align_options.fuzzy_threshold, self.align_options.all_occurrences],
            "examples": self._snapshot_id(project),
            "long_text": [self.settings.long_text_strategy, self.settings.ner_passes, self.settings.llm_context_tokens],
        }
        if params:
            parts["params"] = params  # a project's extra_params, the cascade
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rsplit("/", 1)[-1])[:40] or "model"
        return f"{slug}-{digest}"

    # -- few-shot examples ---------------------------------------------------------------------------

    def _snapshot(self, project: str | None) -> Snapshot | None:
        if self.examples is None or project is None or self.settings.fewshot_k == 0:
            return None
        return self.examples.latest(project)

    def _snapshot_id(self, project: str | None) -> str | None:
        snapshot = self._snapshot(project)
        return snapshot.id if snapshot else None

    def _examples_for(self, job: PredictionJob, texts: dict[str, str]) -> list[dict[str, str]]:
        snapshot = self._snapshot(job.project) if job.fewshot else None
        if snapshot is None:
            return []
        chosen = select_examples(snapshot.examples, "\n".join(texts.values()), k=self.settings.fewshot_k,
                                 budget_tokens=self.settings.fewshot_max_tokens,
                                 exclude_task=str(job.task.get("id")) if job.task.get("id") is not None else None)
        return [{"text": example.text, "answer": example.answer_json} for example in chosen]

    def examples_in_use(self, job: PredictionJob) -> bool:
        return job.fewshot and self._snapshot(job.project) is not None

    # -- the request ---------------------------------------------------------------------------------

    def wants_logprobs(self, model: str) -> bool:
        mode = self.settings.llm_logprobs
        if mode != "auto":
            return mode == "on"
        # Providers known to return token log-probabilities; asking others may be refused outright.
        return all(target.startswith(LOGPROB_PROVIDERS) for target in self.routes.get(model, (model,)))

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any] | None:
        mode = self.settings.llm_output_mode
        if mode == "schema":
            return {"type": "json_schema", "json_schema": {"name": "annotation", "schema": schema, "strict": True}}
        if mode == "json":
            return {"type": "json_object"}
        return None

    def build_request(self, job: PredictionJob, texts: dict[str, str],
                      images: dict[str, ImageInput] | None = None, long_text: dict[str, Any] | None = None
                      ) -> LLMRequest:
        """The request for a task; `long_text` tells the templates that the text is a part of a longer one."""
        images = images or {}
        schema = shared_json_schema(job.config)
        context = self.prompts.base_context(job.config, self.settings.llm_output_mode, json_schema_text(job.config))
        objects = []
        for name, obj in job.config.objects.items():
            if name in texts:
                objects.append({"name": name, "tag": obj.tag, "field": obj.data_key, "text": texts[name],
                                "is_image": False})
            elif name in images:
                objects.append({"name": name, "tag": obj.tag, "field": obj.data_key, "text": "",
                                "is_image": True, "width": images[name].width, "height": images[name].height})
        context.update(
            task={"id": job.task.get("id"), "data": job.task.get("data", {})},
            objects=objects,
            instruction=job.instruction,
            examples=self._examples_for(job, texts),
        )
        if long_text is not None:
            context["long_text"] = long_text
        messages = [message.as_dict() for message in self.prompts.messages(job.project, context)]
        if images:
            # Images travel as content parts of the user message, in the order the prompt names them.
            user: dict[str, Any] = messages[-1]
            user["content"] = [{"type": "text", "text": user["content"]},
                               *({"type": "image_url", "image_url": {"url": image.url}} for image in images.values())]
        return LLMRequest(
            model=job.model or self.settings.llm_model,
            messages=tuple(messages),
            response_format=self._response_format(schema),
            temperature=job.extra.get("temperature", self.settings.llm_temperature),
            max_tokens=job.extra.get("max_tokens", self.settings.llm_max_tokens),
            # A routing file's deployments carry their own api_base; one set here would bypass the Router.
            api_base=None if self.settings.llm_router_config else self.settings.api_base,
            logprobs=self.wants_logprobs(job.model or self.settings.llm_model),
        )

    def prepare(self, job: PredictionJob) -> PreparedTask:
        """Read the task's inputs and render the request a run would send (raises TaskError when it cannot)."""
        texts = task_texts(job.config, job.task, self.fetcher)
        images = task_images(job.config, job.task, self.fetcher, self.settings.image_url_passthrough)
        size = sum(len(text) for text in texts.values())
        if size > self.settings.max_task_chars:
            # A resource limit, not a context one: longer texts are split to fit the model (engine/longtext.py).
            raise TaskError(f"task text has {size} characters, over MAX_TASK_CHARS={self.settings.max_task_chars}; "
                            "split the document or raise the limit")
        inputs = RegionInputs(texts, {name: (image.width, image.height) for name, image in images.items()},
                              self.align_options, task_markup(job.config, job.task, self.fetcher))
        return PreparedTask(self.build_request(job, texts, images), inputs)
