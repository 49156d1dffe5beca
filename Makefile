# The README's two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both install what they need on a fresh Debian 12 machine as root.

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test deps venv bench lint clean

deps:
	@scripts/install-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@# docker-compose 1.29 for the API tests: its PyYAML<6 pin builds on Python 3.11 only without build isolation
	($(VENV)/bin/pip install --quiet wheel "Cython<3" && \
	 $(VENV)/bin/pip install --quiet --no-build-isolation "PyYAML==5.4.1" && \
	 $(VENV)/bin/pip install --quiet -e '.[test,compose]') || \
	 echo "warning: docker-compose 1.29 could not be installed: its API test is skipped"
	$(VENV)/bin/python -m compileall -q src  # PYTHONDONTWRITEBYTECODE may be set: keep start-up fast
	touch $@

venv: deps $(STAMP)

demo: venv
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo.sh

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
