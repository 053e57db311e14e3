# The two commands of the README. Both set up .venv first (idempotent).
.PHONY: quickstart test setup lint

setup:
	scripts/setup.sh

quickstart: setup
	.venv/bin/melt run recipes/quickstart.yaml

test: setup
	scripts/lab_packages.sh
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff format --check . && .venv/bin/ruff check .
