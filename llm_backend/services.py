"""The object graph, built in one pass: settings -> model client -> predictor -> runner -> stores.

Both the web layer (`web/app.py`) and the offline commands (`offline/`, `cli/`) start from
`build_services(settings)`; nothing is patched onto an object after it is built, and building
imports neither Flask nor LiteLLM (LiteLLM loads on the first model call, or in `warm_up`).
Tests pass their own `client` (a completion function) and `cache` at the two I/O edges.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from .core.demo import DEMO_MODEL, is_demo
from .engine.cache import Cache, open_cache
from .engine.cascade import Cascade
from .engine.confidence import Confidence
from .engine.consumers import Consumers
from .engine.events import EventHandler
from .engine.examples import ExampleStore, open_example_store
from .engine.fetch import MediaFetcher
from .engine.jobs import Jobs, current_consumer
from .engine.jobstore import JobStore, open_job_store
from .engine.metrics import Metrics
from .engine.pipeline import PredictPipeline
from .engine.predictor import Predictor, TaskPredictor
from .engine.problems import Problems
from .engine.projects import ProjectStore, open_project_store
from .engine.prompts import PromptLibrary
from .engine.provider_batch_store import ProviderBatchStore, open_provider_batch_store
from .engine.task_runner import TaskRunner
from .engine.training import Trainer
from .engine.writeback import WriteBack
from .label_studio import LabelStudioClient
from .models.client import CompletionClient, LiteLLMClient, litellm_loaded, load_litellm
from .models.context import ContextWindows
from .models.fastpath import FastPath
from .models.limiter import LimitedClient
from .models.preflight import StartupChecks, model_targets
from .models.pricing import Pricing
from .models.router import Routing, load_routing
from .redact import register_secrets
from .settings import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one graph per process
class Services:
    """The long-lived objects of one process, built once and handed to whoever needs them."""

    settings: Settings
    metrics: Metrics
    prompts: PromptLibrary
    cache: Cache
    routing: Routing
    client: CompletionClient
    label_studio: LabelStudioClient | None
    examples: ExampleStore
    projects: ProjectStore
    predictor: TaskPredictor  # the cascade when LLM_CASCADE is set, else the plain predictor
    runner: TaskRunner
    trainer: Trainer
    events: EventHandler
    pricing: Pricing  # prices, rate limits and token counts per model name
    provider_batches: ProviderBatchStore  # provider batches submitted and not yet used (--batch-api)
    job_store: JobStore
    jobs: Jobs
    consumers: Consumers
    health: Problems  # problems of the whole backend (whole-batch failures, the write-back): the status page
    pipeline: PredictPipeline  # a /predict's tasks, through the job or directly
    startup: StartupChecks = field(default_factory=StartupChecks)  # filled by warm_up, shown by /health
    started: float = field(default_factory=time.time)

    @property
    def model_ready(self) -> bool:
        """Whether a prediction can start without waiting for LiteLLM's import (the demo never needs it)."""
        return litellm_loaded() or not model_targets(self.settings, self.routing)

    def warm_up(self) -> threading.Thread:
        """In the background, so /health answers meanwhile: import LiteLLM (the first prediction then does
        not pay for it) and check that the models can be called (an API key, a reachable base URL)."""
        targets = model_targets(self.settings, self.routing)
        if any(is_demo(name) for name in (self.settings.llm_model, *self.settings.cascade_models)):
            log.warning("the demo model answers from simple rules, not a language model: its predictions show "
                        "how the backend works, not what a model would say (model_version starts with %r)",
                        f"{DEMO_MODEL}-")
        thread = threading.Thread(target=self.startup.run, args=(targets, load_litellm if targets else None),
                                  name="startup-checks", daemon=True)
        thread.start()
        return thread

    def close(self, timeout: float | None = 30) -> None:
        """Stop this process's consumers and close every store's connections (tests build many apps in one
        process; a server closes them on shutdown). Using a store afterwards opens a connection again."""
        self.consumers.stop(timeout)
        for store in (self.cache, self.examples, self.projects, self.provider_batches, self.job_store):
            store.disconnect()
        _open.pop(id(self), None)


# Built and not closed yet, for `close_all` (a test session builds hundreds; a dead one drops out by itself).
_open: weakref.WeakValueDictionary[int, Services] = weakref.WeakValueDictionary()


def close_all(timeout: float | None = 30) -> None:
    """Close every `Services` this process built and has not closed."""
    for services in list(_open.values()):
        services.close(timeout)


def model_client(settings: Settings, routing: Routing) -> CompletionClient:
    """LiteLLM's Router when a routing file is set, plain `litellm.completion` otherwise."""
    return routing.client(settings) or LiteLLMClient(
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
        retry_max_wait=settings.llm_retry_max_wait,
        fast=FastPath(enabled=settings.llm_fast_path == "on"),
    )


def label_studio_client(settings: Settings) -> LabelStudioClient | None:
    if settings.ls_url and settings.label_studio_api_key:
        return LabelStudioClient(settings.ls_url, settings.label_studio_api_key.get_secret_value())
    return None


def build_services(
    settings: Settings | None = None,
    *,
    client: CompletionClient | None = None,
    cache: Cache | None = None,
) -> Services:
    settings = settings or load_settings()
    register_secrets(settings.secret_values())
    metrics = Metrics()
    prompts = PromptLibrary(settings.prompts_dir)
    prompts.check()  # a broken template stops the start, with file and line
    cache = cache if cache is not None else open_cache(settings.cache_enabled, settings.cache_dir, settings.cache_url)
    routing = load_routing(settings)  # LLM_ROUTER_CONFIG is parsed and checked now; the Router built on first use
    client = client if client is not None else model_client(settings, routing)
    # Every model call (tasks, parts of long texts) shares LLM_CONCURRENCY slots, across gunicorn's workers too.
    client = LimitedClient(client, settings.llm_concurrency, shared=settings.worker_processes > 1)
    label_studio = label_studio_client(settings)
    fetcher = MediaFetcher(label_studio=label_studio, label_studio_url=settings.ls_url,
                           allowed_hosts=settings.media_hosts, max_bytes=settings.media_max_bytes,
                           timeout=settings.media_timeout)
    examples = open_example_store(settings.cache_dir, settings.cache_url)
    projects = open_project_store(settings.cache_dir, settings.cache_url)
    windows = ContextWindows.from_model_list(settings.llm_context_tokens,
                                             routing.config.model_list if routing.config else ())
    pricing = Pricing(settings, routing)
    confidence = Confidence(settings, client, cache, projects)
    plain = Predictor(settings, prompts, client, cache, metrics, fetcher, examples, routing.routes, windows, pricing,
                      confidence)
    predictor: TaskPredictor = (Cascade(plain, settings.cascade_models, settings.cascade_min_score)
                                if settings.cascade_models else plain)
    runner = TaskRunner(predictor, settings.llm_concurrency)
    trainer = Trainer(runner, examples, projects)
    events = EventHandler(examples, snapshot_every=settings.fewshot_snapshot_every, on_training=trainer.on_training)
    job_store = open_job_store(settings.cache_dir, settings.cache_url)
    jobs = Jobs(settings, job_store, predictor, writeback=label_studio is not None, prompts=prompts)
    health = Problems()
    consumers = Consumers(jobs, job_store, settings.llm_concurrency, retention=settings.job_retention_hours * 3600,
                          writeback=_writeback(job_store, label_studio, jobs, health))
    pipeline = PredictPipeline(settings, runner, jobs, health)
    services = Services(settings, metrics, prompts, cache, routing, client, label_studio, examples, projects,
                        predictor, runner, trainer, events, pricing,
                        open_provider_batch_store(settings.cache_dir, settings.cache_url), job_store, jobs, consumers,
                        health, pipeline)
    _open[id(services)] = services
    return services


def _writeback(store: JobStore, label_studio: LabelStudioClient | None, jobs: Jobs, health: Problems
               ) -> Callable[[Consumers], WriteBack] | None:
    """How a process's consumers build their write-back; None without Label Studio credentials."""
    if label_studio is None:
        return None
    return lambda consumers: WriteBack(store, label_studio, current_consumer(), consumers.live, jobs.awaited,
                                       health)
