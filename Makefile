# `make demo` and `make test` set everything up themselves (a virtualenv in .venv).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install demo test clean-demo browser

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/utilegen generate --sample --n 8 --size 512 --particles 10-30 --out demo_output/synthetic
	@echo "demo: synthetic images in demo_output/synthetic/images, masks in demo_output/synthetic/masks"

# The web app's end-to-end test drives Debian's Chromium (Playwright comes with the dev extra;
# its own browser download does not work offline). Installed here when missing (needs root/apt).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/python -m pytest -n 2 tests

clean-demo:
	rm -rf demo_output
