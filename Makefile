# auto-topup: every set-up step lives here, so that a fresh clone needs only `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack.sh
# The locked dependencies (`make lock` writes them; see "Build and dependencies" in docs/operating.md).
LOCK := requirements/lock.txt
RUNTIME_LOCK := requirements/runtime.lock
UV_VERSION := 0.13.8
# The unit tier also runs on each of these (`make test-pythons`); a missing one is skipped.
PYTHONS ?= 3.11 3.12 3.13
# Point the service and the tests at the local stack (unless the caller set these already).
WITH_ENV = set -a; eval "$$($(STACK) env)"; set +a;

.PHONY: help install up down env status run test test-unit test-integration test-e2e lint \
        format schemas demo chaos fuzz-money bench bench-handler clean test-slow chaos-slow \
        replay-memory test-deploy schema test-stripe-mock lock lock-check test-pythons \
        contract-models test-contract browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Exactly the locked versions, every file checked against its hash; then the project itself.
$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	rm -rf *.egg-info  # a stale one (an older version) would shadow the installed metadata
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed ## Create .venv and install the project with its test tools

# uv resolves for every platform and Python >= 3.11 at once (--universal). It keeps the versions
# already locked unless pyproject.toml asks otherwise; `make lock UPGRADE=1` takes the newest.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml requirements/build.in --universal \
	--python-version 3.11 --generate-hashes --custom-compile-command 'make lock' --quiet \
	$(if $(UPGRADE),--upgrade)

lock: ## Regenerate requirements/lock.txt (runtime + test) and requirements/runtime.lock (the image's)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(UV_COMPILE) --extra test --extra tracing -o $(LOCK)
	$(UV_COMPILE) --extra tracing --constraint $(LOCK) -o $(RUNTIME_LOCK)

LOCK_CHECK_DIR := .cache/lock-check
lock-check: ## Install the lock into two fresh venvs and compare their pip freeze (1-2 minutes)
	rm -rf $(LOCK_CHECK_DIR) && mkdir -p $(LOCK_CHECK_DIR)
	for env in first second; do \
		$(PYTHON) -m venv $(LOCK_CHECK_DIR)/$$env; \
		$(LOCK_CHECK_DIR)/$$env/bin/pip install --quiet --no-cache-dir --require-hashes -r $(LOCK); \
		$(LOCK_CHECK_DIR)/$$env/bin/pip install --quiet --no-deps --no-build-isolation -e .; \
		$(LOCK_CHECK_DIR)/$$env/bin/pip freeze --all >$(LOCK_CHECK_DIR)/$$env.txt; \
	done
	diff -u $(LOCK_CHECK_DIR)/first.txt $(LOCK_CHECK_DIR)/second.txt
	echo "lock-check: two installs from $(LOCK) are the same ($$(wc -l <$(LOCK_CHECK_DIR)/first.txt) packages)"
	rm -rf $(LOCK_CHECK_DIR)

test-pythons: install ## The unit tier on every Python in PYTHONS (a venv .venv-X.Y each, from the lock)
	deploy/local/test-pythons.sh $(PYTHONS)

up: install ## Start Kafka, PostgreSQL, localstripe and stripe-mock on 127.0.0.1 and wait until they answer
	$(STACK) up

down: ## Stop the local stack
	$(STACK) down

env: ## Print the export lines that point a shell at the local stack
	@$(STACK) env

status: ## Show which parts of the local stack run
	@$(STACK) status

run: up ## Install, start the stack, run the service in the foreground
	$(WITH_ENV) exec $(BIN)/auto-topup run

# The end-to-end tests whose outcome turns on a business day's end, run again with the
# service's clock at 00:30 and at 23:30 UTC (every e2e test pins it, to 10:00 UTC by default).
HOUR_TESTS := tests/e2e/test_amounts_v2.py tests/e2e/test_rules.py tests/e2e/test_cheque_tt.py tests/e2e/test_stripe.py \
	tests/e2e/test_money_v2.py tests/e2e/test_cli_replay.py tests/e2e/test_cli_explain.py \
	tests/e2e/test_simulate.py tests/e2e/test_open_invoices.py tests/e2e/test_stripe_fallback.py
AT_HOURS = for at in 00:30 23:30; do echo "== service clock at $$at UTC"; \
	AUTO_TOPUP_TEST_CLOCK=$$at $(1) $(BIN)/pytest -q $(HOUR_TESTS); done

test: up lint browser ## Install, start the stack, lint, run every tier of tests (and the day-boundary ones at 00:30 and 23:30)
	$(WITH_ENV) $(BIN)/pytest tests/unit tests/deploy tests/contract tests/integration tests/e2e \
		tests/stripe_mock
	$(WITH_ENV) $(call AT_HOURS,)
	deploy/local/test-pythons.sh --except $(BIN)/python $(PYTHONS)

# Debian's headless Chromium and its WebDriver, for tests/e2e/test_support_page.py (apt-get
# only when /usr/bin/chromedriver is missing; as root, or through sudo without a password).
CHROMEDRIVER := /usr/bin/chromedriver
browser: ## Install Debian's chromium and chromium-driver when /usr/bin/chromedriver is missing
	if [[ ! -x $(CHROMEDRIVER) ]]; then \
		sudo=(); \
		if [[ $$(id -u) -ne 0 ]]; then \
			sudo -n true 2>/dev/null || { echo "browser: run 'apt-get install -y chromium chromium-driver' as root" >&2; exit 1; }; \
			sudo=(sudo -n); \
		fi; \
		"$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		"$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi
	$(CHROMEDRIVER) --version

test-unit: install ## Only the pure, fast tests
	$(BIN)/pytest tests/unit

test-deploy: install ## Only the deployment files in deploy/ (no stack)
	$(BIN)/pytest tests/deploy

test-integration: up
	$(WITH_ENV) $(BIN)/pytest tests/integration

test-e2e: up browser
	$(WITH_ENV) $(BIN)/pytest tests/e2e

test-stripe-mock: install ## Every Stripe request of the service, validated by stripe-mock (built with Go when missing)
	$(STACK) start-stripe-mock
	$(WITH_ENV) $(BIN)/pytest tests/stripe_mock

lint: install ## ruff, mypy --strict and the import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schemas: install ## Regenerate schemas/ and docs/contract-reference.md from the models
	$(BIN)/python -m service.contract.export schemas

# The AsyncAPI CLI and Modelina, pinned in tools/contract/package-lock.json, are installed with
# `npm ci` into .cache/node/<digest of the lock> (once per lock). Needs node, npm, javac, go.
contract-models: ## Validate schemas/asyncapi.json, generate Java and Go models from it, compile them
	tools/contract/models.sh

test-contract: install ## The contract tier: make contract-models as a test (no stack)
	$(BIN)/pytest tests/contract

schema: up ## Regenerate service/adapters/postgres/schema.sql from a freshly migrated database
	$(WITH_ENV) $(BIN)/python -m tests.schema_snapshot

chaos: up ## The big chaos run (200k events, 4 instances, 50+ kills, broker and DB restarts)
	$(WITH_ENV) $(BIN)/python -m tests.chaos

replay-memory: up ## auto-topup replay over 1,000,000 records without --report: peak RSS under 200 MB
	$(WITH_ENV) $(BIN)/python -m tests.bench.replay_memory

fuzz-money: install ## The stateful model test of the money rules, 100,000 examples (long)
	AUTO_TOPUP_MODEL_EXAMPLES=$${AUTO_TOPUP_MODEL_EXAMPLES:-100000} $(BIN)/pytest -p no:cacheprovider \
		tests/unit/test_money_model.py --hypothesis-show-statistics

bench: up ## Throughput, latency, memory and GC against a raw aiokafka passthrough
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(WITH_ENV) $(BIN)/python -m tests.bench

bench-handler: up ## The batch handler alone on PostgreSQL (no Kafka): CPU per event
	$(WITH_ENV) $(BIN)/python -m tests.bench.handler

demo: install ## Publish example events to the running service and print what it publishes
	$(WITH_ENV) $(BIN)/python -m service.entrypoints.demo

clean: down
	rm -rf $(VENV) .venv-* .stack .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# The proofs on a deliberately slow machine: the tests, the services they start and a stack of
# their own (other ports, state in .stack/slow, stopped at the end) all pinned to one core.
SLOW_CPUS ?= 0
PIN = taskset -c $(SLOW_CPUS)
SLOW_STACK_ENV = STACK_DIR=$(CURDIR)/.stack/slow STACK_KAFKA_PORT=29092 \
	STACK_KAFKA_CONTROLLER_PORT=29093 STACK_KAFKA_SASL_PORT=29094 STACK_PG_PORT=54329 \
	STACK_STRIPE_PORT=28420 STACK_STRIPE_MOCK_PORT=22111 STACK_STRIPE_MOCK_HTTPS_PORT=22112
WITH_SLOW_STACK = export $(SLOW_STACK_ENV); trap '$(STACK) down' EXIT; $(PIN) $(STACK) up; \
	$(WITH_ENV)

test-slow: install lint ## make test on one core (taskset -c 0), against a stack pinned to it
	$(WITH_SLOW_STACK) $(PIN) $(BIN)/pytest tests/unit tests/deploy tests/integration tests/e2e \
		tests/stripe_mock; \
	$(call AT_HOURS,$(PIN))

chaos-slow: install ## make chaos on one core (taskset -c 0), against a stack pinned to it
	$(WITH_SLOW_STACK) $(PIN) $(BIN)/python -m tests.chaos
