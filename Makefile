# hotline-gateway: every task is one command. `make help` lists them.
PY := .venv/bin/python
INSTALL := bash deploy/local/install.sh

.DEFAULT_GOAL := help
.PHONY: help install demo up down status test test-fast bench lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: ## install what is missing: servers (apt, go) and the Python venv
	@$(INSTALL)

demo: install ## start servers and the four services with demo accounts and mail; print the URLs
	@$(PY) -m deploy.local.demo up --demo-data

up: install ## start servers and the four services without demo data
	@$(PY) -m deploy.local.demo up

down: ## stop everything `make demo` or `make up` started
	@$(PY) -m deploy.local.demo down

status: ## which services answer /readyz
	@$(PY) -m deploy.local.demo status

# Tests spend most of their time waiting on servers and services, so more workers than cores help:
# each worker starts its own server stack; `worksteal` hands the long fault tests' neighbours on.
TEST_WORKERS ?= 3

test: install ## run the whole suite against real servers (it starts and stops its own; TEST_WORKERS=3)
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: install ## the first two tiers: unit tests, and those of one real server stack (no service, no browser)
	@$(PY) -m pytest -m "unit or server"

bench: install ## run the benchmarks, print their figures (QUICK=1: shorter; JSON=1: JSON on stdout too)
	@$(PY) -m benchmarks $(if $(QUICK),--quick) $(if $(JSON),--json) $(BENCH_ARGS)

lint: install ## ruff and mypy
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy shared conversations services deploy
