# The two commands of the README:  `make run`  (main job)  and  `make test`  (test suite).
# Both create .venv on first use, install tfxfer into it, and use ../shared's offline kit when it
# exists (so they work with no internet).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KIT := ../shared/kit/prepare.sh
# GPU machines get the CUDA-capable `tensorflow`; everything else gets `tensorflow-cpu`.
TF_EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo tf || echo cpu)
WITH_KIT := if [ -x $(KIT) ]; then eval "$$($(KIT))"; fi;
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: install run test test-fast lint docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(TF_EXTRA),test,tfds,litert,text,docs]"
	$(PY) -m pip install -q --no-deps "keras-hub>=0.21"  # not its tensorflow-text: see pyproject
	touch $@

run: install
	@$(WITH_KIT) $(PY) -m tfxfer.recipes.small_similar --output runs/small_similar --overwrite

test: install
	@$(WITH_KIT) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure, not a pass" >&2; exit 1; fi; \
	exit $$rc

# The fast lane while editing: tests/unit and the docstring examples, none marked slow, kit or
# integration (CI runs `make test`, everything).
test-fast: install
	@$(WITH_KIT) $(PY) -m pytest $(PYTEST_ARGS) tests/unit tfxfer -m "not slow and not kit and not integration"

# Style and structure (what .ci/run checks before the tests): ruff lint and format, and the
# import layers of pyproject.toml's [tool.importlinter].
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The documentation website: docs/*.md and the API pages generated from the docstrings, built
# offline into site/ (git-ignored); --strict fails on any warning, a broken link or anchor included.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache
