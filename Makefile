# `make serve` to use the backend, `make test` to change it. Each creates .venv on first use;
# serving installs only what the backend needs, the test tools come with `make test`.
# The llm-backend command lives in .venv/bin: `source .venv/bin/activate` to type it directly.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP := $(VENV)/.installed-test
# The real Label Studio the end-to-end tests start (its own virtualenv: Django must not mix with ours).
LS_VENV ?= .venv-ls

# Test workers: the suite waits on subprocesses and servers more than it computes, so more workers than
# cores pays. No test measures time against a limit, so every test can share the machine with the others.
TEST_JOBS ?= 4
# Bytecode caches on even where the shell turns them off (PYTHONDONTWRITEBYTECODE, common in containers): each test
# worker would otherwise rewrite the asserts of every test module and plugin again (seconds of CPU per worker), and
# each of the suite's ~100 subprocesses compile the backend again.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest
PARALLEL := $(PYTEST) -n $(TEST_JOBS) --dist loadgroup

.PHONY: help install serve demo doctor check test lint bench clean label-studio

help:
	@echo "make serve    serve the backend on http://0.0.0.0:9090 (set LLM_MODEL first, see README)"
	@echo "make demo     serve the demo model: predictions from simple rules, no API key or GPU needed"
	@echo "make doctor   check settings, model and Label Studio (CONFIG=label_config.xml to check a config too)"
	@echo "make install  only create .venv with the backend in it (.venv/bin/llm-backend)"
	@echo "make check    contributors: ruff and every test that needs neither Label Studio nor a browser (minutes)"
	@echo "make test     contributors: ruff and every test (installs test tools and Label Studio, ~1 GB); what CI runs"
	@echo "make bench    the benchmarks"

$(SERVE_STAMP): pyproject.toml
	@echo "Installing llm-backend into $(VENV) (about a minute the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): $(SERVE_STAMP)
	@echo "Installing the test tools into $(VENV)"
	$(BIN)/python -m pip install -q -e '.[test,lab]'
	touch $@

# Installs Label Studio and migrates its database on a first run, with progress; a no-op later.
label-studio: $(TEST_STAMP)
	@LS_VENV=$(abspath $(LS_VENV)) $(BIN)/python -m testkit.label_studio

install: $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/llm-backend serve

demo: $(SERVE_STAMP)
	LLM_MODEL=demo $(BIN)/llm-backend serve

doctor: $(SERVE_STAMP)
	$(BIN)/llm-backend doctor $(if $(CONFIG),--config $(CONFIG))

check: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(PARALLEL) -m "not label_studio and not browser"

# Label Studio's virtualenv installs in the background with the system Python, alongside .venv's install and the
# first tests (its tests wait on the install's lock if it is not done; its database is migrated on first use).
# Its tests share two workers, each with one Label Studio, while the other workers run everything else.
test:
	LS_VENV=$(abspath $(LS_VENV)) $(PYTHON) -m testkit.ls_install &
	$(MAKE) --no-print-directory $(TEST_STAMP)
	$(BIN)/ruff check .
	LS_VENV=$(abspath $(LS_VENV)) $(PARALLEL)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(SERVE_STAMP)
	$(BIN)/python bench/align.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/longdoc.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/replies.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
