# Pulse — developer commands. Every target does its own set-up (scripts/bootstrap.sh).
.DEFAULT_GOAL := help
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: help bootstrap dev test test-unit lint format constraints clean bench bench-ingest bench-delivery bench-evaluator

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap:  ## install mosquitto and the Python environment (idempotent)
	@scripts/bootstrap.sh

dev: bootstrap  ## run the platform locally on embedded real servers (Ctrl-C stops it)
	$(VENV)/pulse dev

test: bootstrap  ## run the whole test-suite against real servers
	$(VENV)/python -m pytest $(PYTEST_ARGS)

test-unit: bootstrap  ## only the tests that need no server
	$(VENV)/python -m pytest -m unit $(PYTEST_ARGS)

lint: bootstrap  ## ruff lint + format check, mypy
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

format: bootstrap  ## apply ruff fixes and formatting
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

bench: bench-ingest bench-evaluator bench-delivery  ## run every benchmark (results in bench/results/)

bench-ingest: bootstrap  ## ingest MQTT/HTTP throughput vs a bare-subscriber baseline, latency, 5-min memory soak
	$(VENV)/python -m bench.ingest

bench-evaluator: bootstrap  ## evaluator obs/s at 100k devices + 1k rules vs a bare reader, RSS, staleness delay p50/p99
	$(VENV)/python -m bench.evaluator

bench-delivery: bootstrap  ## webhook deliveries/s against a bare httpx baseline, alert-to-receipt latency
	$(VENV)/python -m bench.delivery

constraints:  ## re-pin constraints.txt from the current .venv
	{ printf '# Pinned versions for repeatable installs: pip install -c constraints.txt -e ".[dev]"\n# Regenerate with: make constraints\n'; \
	  $(VENV)/pip freeze --exclude-editable; } > constraints.txt

clean:  ## remove local server data and caches (keeps .venv)
	rm -rf .cache/dev .pytest_cache .mypy_cache .ruff_cache
