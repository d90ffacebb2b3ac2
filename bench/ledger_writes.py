"""How many SQLite write transactions a task costs on the job path, per file in CACHE_DIR.

Runs the test LLM server in its own process, builds an app with `create_app` (SQLite in a temp CACHE_DIR, no
Label Studio), sends one /predict of N tasks with ids (the job path: ledger, queue, consumers) that all finish
before the deadline, and counts every write transaction SQLite is asked to commit while it runs: an explicit
`BEGIN ... COMMIT`, or one write statement on its own (autocommit). The consumers' heartbeats during the run are
counted too (a few per second, whatever the number of tasks).

    python bench/ledger_writes.py [--tasks 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import CONFIG, llm_server, load_average  # the bench folder is on sys.path when a script runs

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.models.client import load_litellm
from llm_backend.settings import Settings
from llm_backend.web.app import create_app, services_of

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
counted: Counter[str] = Counter()
_lock = threading.Lock()


def _counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    """sqlite3.connect, with a trace callback that counts the connection's committed write transactions."""
    connection = _connect(*args, **kwargs)
    name = Path(str(args[0] if args else kwargs["database"])).name
    state = {"open": False, "wrote": False}

    def trace(sql: str) -> None:
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb == "BEGIN":
            state.update(open=True, wrote=False)
        elif verb in ("COMMIT", "END"):
            if state["open"] and state["wrote"]:
                with _lock:
                    counted[name] += 1
            state.update(open=False, wrote=False)
        elif verb == "ROLLBACK":
            state.update(open=False, wrote=False)
        elif verb in WRITES:
            if state["open"]:
                state["wrote"] = True
            else:
                with _lock:
                    counted[name] += 1

    connection.set_trace_callback(trace)
    return connection


_connect = sqlite3.connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    sqlite3.connect = _counting_connect  # type: ignore[assignment]
    with llm_server(args.latency) as control, tempfile.TemporaryDirectory() as tmp:
        load_litellm()
        settings = Settings(llm_model="openai/bench", llm_api_base=control.base_url, llm_api_key="sk-bench",
                            llm_concurrency=args.concurrency, cache_dir=Path(tmp), predict_deadline=600,
                            prompts_dir=DEFAULT_PROMPTS_DIR)
        app = create_app(settings)
        body = {"label_config": CONFIG, "project": "1.1",
                "tasks": [{"id": i + 1, "data": {"text": f"writes {i}"}} for i in range(args.tasks)]}
        counted.clear()
        started = time.perf_counter()
        results = app.test_client().post("/predict", json=body).get_json()["results"]
        elapsed = time.perf_counter() - started
        snapshot = dict(counted)
        services_of(app).close()
    ok = sum("result" in item for item in results)
    if ok != args.tasks:
        raise SystemExit(f"only {ok}/{args.tasks} tasks predicted")
    print(f"{args.tasks} tasks, LLM_CONCURRENCY={args.concurrency}, {elapsed:.2f} s, load {load_average()}")
    print()
    print("| file | write transactions | per task |")
    print("| --- | ---: | ---: |")
    for name, count in sorted(snapshot.items()):
        print(f"| {name} | {count} | {count / args.tasks:.2f} |")
    total = sum(snapshot.values())
    print(f"| all | {total} | {total / args.tasks:.2f} |")


if __name__ == "__main__":
    main()
