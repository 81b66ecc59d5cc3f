# Two entry points: `make test` runs every check; each target builds .venv from the lock on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lock clean

$(STAMP): requirements-lock.txt settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	touch $@

## test: aeft/ matches the notebooks, notebooks are clean, every notebook runs, then pytest
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/test.sh

## lock: rewrite requirements-lock.txt from the current .venv
lock: $(STAMP)
	{ head -n 2 requirements-lock.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^aeft'; } > requirements-lock.tmp
	mv requirements-lock.tmp requirements-lock.txt

clean:
	rm -rf $(VENV) _docs _proc nbs/_proc *.egg-info
