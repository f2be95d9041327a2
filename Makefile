.PHONY: setup run test bench

HOST ?= 127.0.0.1
PORT ?= 8000

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/avatar serve --host $(HOST) --port $(PORT)

test:
	bash scripts/setup.sh --test
	.venv/bin/python -m pytest -q --durations=30 tests
