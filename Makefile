# netops.multihome — developer entry points. `make demo` and `make test` are the two that matter.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
COLLECTIONS := $(CURDIR)/.build/collections
COLL_LINK := $(COLLECTIONS)/ansible_collections/netops/multihome
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

TIMED = @start=$$(date +%s); trap 'echo "== $@: $$(( $$(date +%s) - start ))s"' EXIT;

.PHONY: setup build demo test lint ruff yamllint ansible-lint unit sanity role-readme docs ee \
	kernel molecule clean lab-up lab-down

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

# Every check, then one line: targets, tests passed (pytest and testinfra counts), minutes.
TEST_TARGETS := lint unit sanity docs kernel molecule
test: setup
	@start=$$(date +%s); rc=0; mkdir -p .build; \
	$(MAKE) --no-print-directory $(TEST_TARGETS) 2>&1 | tee .build/test.log || rc=$$?; \
	passed=$$({ grep -oE '\b[0-9]+ passed' .build/test.log || true; } | awk '{n += $$1} END {print n + 0}'); \
	verdict=$$([ $$rc = 0 ] && echo ok || echo FAILED); \
	minutes=$$(awk -v s=$$(( $$(date +%s) - start )) 'BEGIN {printf "%.1f", s / 60}'); \
	echo "make test $$verdict: $(words $(TEST_TARGETS)) targets ($(TEST_TARGETS)), $$passed tests passed, $$minutes min"; \
	exit $$rc

# ---------------------------------------------------------------- static checks
lint: ruff yamllint ansible-lint

ruff: setup
	$(TIMED) $(BIN)/ruff check .

yamllint: setup
	$(TIMED) $(BIN)/yamllint --strict .

# The whole project (roles, playbooks, molecule, lab inventories; see .ansible-lint), then the
# examples of the docs (module EXAMPLES, README plays) written out as playbooks.
ansible-lint: setup
	$(TIMED) $(BIN)/ansible-lint --offline --profile production --strict; \
	rm -rf .build/doc-examples && $(PY) scripts/doc_examples.py .build/doc-examples && \
	cd .build/doc-examples && $(BIN)/ansible-lint --offline --profile production --strict playbooks/*.yml

# ---------------------------------------------------------------- unit tests (no root needed)
unit: setup
	$(TIMED) $(PY) -m pytest -q tests/unit

# ---------------------------------------------------------------- ansible-test on the tarball (scripts/ansible_test.sh)
# The collection tarball, also under a version-less name for execution-environment.yml.
build: setup
	rm -rf .build/dist && mkdir -p .build/dist
	$(BIN)/ansible-galaxy collection build --force --output-path .build/dist .
	cp .build/dist/netops-multihome-*.tar.gz .build/dist/netops-multihome.tar.gz

sanity: build
	$(TIMED) bash scripts/ansible_test.sh .build/dist/netops-multihome.tar.gz $(BIN)

role-readme: setup
	$(PY) scripts/role_readme.py --write

# ---------------------------------------------------------------- docs, changelog, EE
docs: setup ee
	$(TIMED) for m in policy_route_table conntrack_balance; do \
		out=$$(ANSIBLE_NOCOLOR=1 $(BIN)/ansible-doc netops.multihome.$$m); \
		grep -q '^EXAMPLES:' <<<"$$out" || { echo "ansible-doc $$m: no EXAMPLES" >&2; exit 1; }; \
		grep -q '^RETURN VALUES:' <<<"$$out" || { echo "ansible-doc $$m: no RETURN" >&2; exit 1; }; \
		echo "ansible-doc netops.multihome.$$m: ok"; \
	done; \
	$(BIN)/ansible-doc -t role netops.multihome.multihome >/dev/null; \
	$(BIN)/antsibull-changelog lint; \
	$(BIN)/antsibull-changelog generate --output .build/CHANGELOG.check.rst >/dev/null 2>&1 || \
		$(BIN)/antsibull-changelog generate --output .build/CHANGELOG.check.rst; \
	diff -u CHANGELOG.rst .build/CHANGELOG.check.rst || \
		{ echo "CHANGELOG.rst is stale: run antsibull-changelog release/generate" >&2; exit 1; }

ee: build
	rm -rf .build/ee-context
	$(BIN)/ansible-builder create -f execution-environment.yml -c .build/ee-context \
		--output-filename Containerfile >/dev/null
	grep -q 'ansible-galaxy collection install' .build/ee-context/Containerfile
	tar -tzf .build/ee-context/_build/netops-multihome.tar.gz roles/multihome/meta/argument_specs.yml >/dev/null
	grep -q openssh-client .build/ee-context/_build/bindep.txt
	@echo "ansible-builder create: ok (.build/ee-context)"

# ---------------------------------------------------------------- kernel tests (root)
kernel: setup
	$(TIMED) $(PY) -m pytest -q -n 2 --dist loadfile --durations=20 tests/kernel

# Every scenario (molecule/shared holds their common create/destroy, not a scenario).
molecule: setup
	$(TIMED) for f in molecule/*/molecule.yml; do \
		s=$$(basename $$(dirname $$f)); $(BIN)/molecule test -s $$s || exit 1; \
	done

lab-up: setup
	$(PY) lab/mhlab.py up

lab-down:
	$(PY) lab/mhlab.py down

clean: lab-down
	rm -rf .build $(VENV) .pytest_cache .ruff_cache
