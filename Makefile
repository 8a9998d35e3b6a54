# The two jobs of the README. Each one sets up .venv from requirements.txt when it is missing or
# older than the requirements, then does its work.
#   make book   set up, then build the site into _build/html (pages executed, cached)
#   make test   set up, then run the whole test suite (which also builds the book, cold and cached)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The offline CIFAR-10 subset that tests use (and pages, when set): ../shared/data/cifar10 when it
# exists beside the checkout. Unset, pages download the full data set through Keras.
SHARED_DATA := $(abspath ../shared/data/cifar10)
ifneq ($(wildcard $(SHARED_DATA)/*.npz),)
CNNBOOK_DATA ?= $(SHARED_DATA)
export CNNBOOK_DATA
endif

.PHONY: book test setup clean
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

book: setup
	$(BIN)/jupyter-book build . -W -n --keep-going

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf _build
