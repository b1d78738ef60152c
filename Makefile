# The two commands of the README: `make demo` (main job) and `make test` (tests). Each does its own set-up.
PY := .venv/bin/python

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m obliviate.demo

test: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m pytest -q --durations=25

lint: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

bench: setup
	$(PY) bench/train_throughput.py
