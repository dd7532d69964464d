# netops.multihome — developer entry points. `make demo` and `make test` are the two that matter.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
COLLECTIONS := $(CURDIR)/.build/collections
COLL_LINK := $(COLLECTIONS)/ansible_collections/netops/multihome
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test lint unit integration molecule clean lab-up lab-down

setup: $(VENV)/.installed $(COLL_LINK)

$(VENV)/.installed: requirements-dev.txt scripts/setup-host.sh
	bash scripts/setup-host.sh
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(COLL_LINK):
	mkdir -p $(dir $(COLL_LINK))
	ln -sfn $(CURDIR) $(COLL_LINK)

demo: setup
	bash lab/demo.sh

test: setup lint unit integration molecule

lint: setup
	$(BIN)/ruff check .

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

molecule: setup
	@if ls molecule/*/molecule.yml >/dev/null 2>&1; then \
		for s in $$(ls molecule); do (cd $(CURDIR) && $(BIN)/molecule test -s $$s) || exit 1; done; \
	else echo "no molecule scenarios yet"; fi

lab-up: setup
	$(PY) lab/mhlab.py up

lab-down:
	$(PY) lab/mhlab.py down

clean: lab-down
	rm -rf .build $(VENV) .pytest_cache .ruff_cache
