# Two entry points: `make test` runs every check; each target builds .venv from the lock on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo figures test docs readme lock clean speed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSDEPS := /usr/bin/chromium /usr/bin/chromedriver /usr/share/javascript/mathjax/MathJax.js

$(STAMP): requirements-lock.txt settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	touch $@

# Debian packages for the offline docs (MathJax) and their browser test (headless Chromium, ChromeDriver); without the
# recommended ones (GPU drivers, sandbox helper, power, printer and notification tools, more fonts): headless Chromium
# needs none of them
$(SYSDEPS):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver libjs-mathjax

## demo: the main job: train GAP, GPP and GPP + AEFT on synthetic shapes on the CPU, compare their CAMs (runs/demo)
demo: $(STAMP)
	$(BIN)/aeft_demo

## figures: the home page's figure, drawn by the demo's default run (nbs/images/demo_cams.png)
figures: $(STAMP)
	$(BIN)/aeft_demo --figure nbs/images/demo_cams.png

## speed: training and CAM-inference images/s and peak memory of ResNet-38d + GPP (fp32, bf16, channels-last, compile) and the released recipe's projected time; SPEED="--warm_batch 1 ..." passes options
speed: $(STAMP)
	$(BIN)/python -m aeft.speed $(SPEED)

## test: aeft/ matches the notebooks, notebooks are clean, every notebook runs, then pytest (docs included)
test: $(STAMP) $(SYSDEPS)
	PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/test.sh

## docs: the docs site in _docs/: nbdev processes the notebooks, Sphinx (MyST-NB, sphinx-book-theme) renders them, offline (`nbdev_docs` is the Quarto way, where Quarto is installed)
docs: $(STAMP) $(SYSDEPS)
	$(BIN)/python scripts/build_docs.py

## readme: README.md from nbs/index.ipynb (what `nbdev_readme` does with Quarto)
readme: $(STAMP)
	$(BIN)/python scripts/build_docs.py --readme

## lock: rewrite requirements-lock.txt from the current .venv
lock: $(STAMP)
	{ head -n 2 requirements-lock.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^aeft'; } > requirements-lock.tmp
	mv requirements-lock.tmp requirements-lock.txt

clean:
	rm -rf $(VENV) _docs _proc nbs/_proc build/docs-* *.egg-info
