# `make demo` and `make test` set everything up themselves (a virtualenv in .venv).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install demo test clean-demo browser ocr

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	rm -rf demo_output
	$(BIN)/utilegen sample --out demo_output/sample
	$(BIN)/utilegen generate --images demo_output/sample/images --masks demo_output/sample/masks \
	    --n 8 --size 512 --particles 10-30 --out demo_output/synthetic
	$(BIN)/utilegen analyze demo_output/sample/images --out demo_output/report
	@echo "demo: synthetic pairs in demo_output/synthetic/, analysis (particles.csv, summary.csv," \
	      "psd.png, overlays/) in demo_output/report/"

# The web app's end-to-end test drives Debian's Chromium (Playwright comes with the dev extra;
# its own browser download does not work offline). Installed here when missing (needs root/apt).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Scale-bar labels are read by Tesseract (the system's OCR; its English model ships with
# the Debian package, nothing is downloaded at run time). Installed here when missing.
ocr:
	@command -v tesseract >/dev/null 2>&1 || { \
	  echo "installing Debian's tesseract-ocr for scale-bar reading"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null; }

test: install browser ocr
	$(BIN)/ruff check utilegen tests benchmarks
	$(BIN)/python -m pytest -n 2 tests

clean-demo:
	rm -rf demo_output
