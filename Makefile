# The README's two commands: `make dev` (run Conveyor) and `make test` (run the tests).
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/conveyor: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

.PHONY: install dev test test-fast lint
install: $(BIN)/conveyor

dev: install
	$(BIN)/conveyor dev --demo

lint: install
	$(BIN)/ruff check conveyor tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest tests/unit
