# The two commands of the README. Both set up .venv first (idempotent).
.PHONY: quickstart test setup lint

setup:
	scripts/setup.sh

quickstart: setup
	.venv/bin/melt run recipes/quickstart.yaml

test: setup
	scripts/lab_packages.sh
	LLAMA_BENCH_DIR=$(HOME)/.cache/melt/llama-bench benchmarks/build_llama_bench.sh >/dev/null
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff format --check . && .venv/bin/ruff check .
