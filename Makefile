# The two jobs of the README. Each one sets up .venv from requirements.txt when it is missing or
# older than the requirements, then does its work.
#   make book   set up, then build the site into _build/html (pages executed, cached)
#   make test   set up, then lint (ruff) and run the test suite: every test but the grading batches
#               (it also builds the book, cold and cached; at most 15 minutes)
#   make test-grading  the grading batches: whole classes and the hostile corpora graded end to end
#               by real nbgrader commands (tests marked grading_batch; CI runs them after make test)
#   make test-fast  set up (Debian packages too, as make test), lint, then the fast tier: every
#               test not marked slow (no training, no book build; at most 3 minutes)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Both runs use two pytest-xdist workers (tests/conftest.py says how tests are grouped into work
# units; README.md gives their measured times). TEST_WORKERS=0 runs them in one process; three
# workers were no faster on two cores.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder \
	--durations=25
# The offline CIFAR-10 subset that tests use (and pages, when set): ../shared/data/cifar10 when it
# exists beside the checkout. Unset, pages download the full data set through Keras.
SHARED_DATA := $(abspath ../shared/data/cifar10)
ifneq ($(wildcard $(SHARED_DATA)/*.npz),)
CNNBOOK_DATA ?= $(SHARED_DATA)
export CNNBOOK_DATA
endif

.PHONY: book test test-grading test-fast lint setup system system-ready clean hub
setup: $(VENV)/.installed

# What the tests need from outside PyPI: Debian's packages (system-packages.txt: bubblewrap for the
# grading sandbox, chromium for the browser test, postgresql for parallel grading) and the npm
# packages of package.json (MathJax, served with the site; JupyterHub's configurable-http-proxy).
# apt-get needs root.
MISSING_DEBIAN = grep -vE '^\s*(\#|$$)' system-packages.txt | while read -r pkg; do \
	dpkg -s "$$pkg" >/dev/null 2>&1 || echo "$$pkg"; done
system: node_modules/.installed
	@missing=$$($(MISSING_DEBIAN)); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# `make test` installs the Debian packages itself when it can (as root, or with sudo that needs no
# password); otherwise it stops here, before any test, and names the one command to run.
system-ready:
	@missing=$$($(MISSING_DEBIAN)); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory system; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo $(MAKE) --no-print-directory system; \
	else \
	  echo "make test needs Debian packages that are not installed: $$missing" >&2; \
	  echo "(bubblewrap: the grading sandbox; chromium: the browser test; postgresql: parallel grading). Run once, as root:" >&2; \
	  echo "    sudo make system" >&2; \
	  echo "then make test again." >&2; \
	  exit 2; \
	fi

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.installed: requirements.txt requirements-no-deps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-no-deps.txt
	touch $@

# jupyter-cache runs a page again only when its code changes (and Sphinx re-reads only changed
# sources: its environment is in .doctrees), but the pages also read results/
# and call cnnbook/: when a file there is newer than the last good build (or no build left its
# stamp: a cache from before it), the cache goes first.
book: setup node_modules/.installed
	@if [ -d _build ] && { [ ! -f _build/.executed ] || [ -n "$$(find results \
		cnnbook -type f -newer _build/.executed ! -path '*__pycache__*' -print -quit)" ]; }; then \
		echo "results/ or cnnbook/ changed since the last build: every page runs again"; \
		rm -rf _build/.jupyter_cache _build/.doctrees; fi
	$(BIN)/jupyter-book build . -W -n --keep-going
	touch _build/.executed

lint: setup
	$(BIN)/ruff check .

test: system-ready lint node_modules/.installed
	$(PYTEST) -m "not grading_batch"

test-grading: system-ready setup
	$(PYTEST) -m grading_batch

test-fast: system-ready lint
	$(PYTEST) -m "not slow"

# A local demonstration hub on http://127.0.0.1:8000 (deploy/README.md): JupyterHub with an
# instructor and two students (any password), the course ready to release. Ctrl-C stops it and
# every server; its state lives in .hub/ (delete it to start the course afresh).
# `make hub HUB_OPTIONS=--ngshare`: two courses on the hub through the ngshare exchange.
hub: setup node_modules/.installed
	$(BIN)/python deploy/demo_hub.py --state .hub --port 8000 $(HUB_OPTIONS)

clean:
	rm -rf _build
