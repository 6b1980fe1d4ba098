# `make demo` and `make test` set everything up themselves (a virtualenv in .venv).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install demo test clean-demo

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/utilegen generate --sample --n 8 --size 512 --particles 10-30 --out demo_output/synthetic
	@echo "demo: synthetic images in demo_output/synthetic/images, masks in demo_output/synthetic/masks"

test: install
	$(BIN)/python -m pytest -n 2 tests

clean-demo:
	rm -rf demo_output
