# hotline-gateway: every task is one command. `make help` lists them.
PY := .venv/bin/python
INSTALL := bash deploy/local/install.sh

.DEFAULT_GOAL := help
.PHONY: help install demo up down status test bench lint

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

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

test: install ## run the whole suite against real servers (it starts and stops its own)
	@$(PY) -m pytest

bench: install ## run the benchmarks and print their figures
	@$(PY) -m benchmarks

lint: install ## ruff and mypy
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy shared conversations services deploy
