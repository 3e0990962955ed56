# safe-exec: `make run` serves on $PORT (default 8080) with the real sandbox; `make test` checks.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The sandbox's libraries live where the unprivileged sandbox user can read them: a system
# directory when we are root (the checkout may sit under /root), else inside the checkout.
SANDBOX_SITE ?= $(if $(filter 0,$(shell id -u)),/opt/safe-exec/sandbox-site,$(CURDIR)/.sandbox/site)
SANDBOX_REQUIREMENTS := requirements-sandbox.txt
STAMP_VENV := $(VENV)/.installed
STAMP_SITE := $(SANDBOX_SITE)/.installed-$(shell cat $(SANDBOX_REQUIREMENTS) 2>/dev/null | cksum | cut -d' ' -f1)
export SANDBOX_SITE

.PHONY: install run test test-unit test-integration test-slow lint bench clean

install: $(STAMP_VENV) $(STAMP_SITE)

$(STAMP_VENV): pyproject.toml
	@# Debian's python3 may lack ensurepip (python3-venv); fall back to the system pip.
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || ( rm -rf $(VENV) && $(PYTHON) -m venv --without-pip $(VENV) \
	  && $(PYTHON) -m pip --python $(PY) install --quiet pip )
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(STAMP_SITE): $(SANDBOX_REQUIREMENTS) | $(STAMP_VENV)
	rm -rf $(SANDBOX_SITE) && mkdir -p $(SANDBOX_SITE)
	$(PY) -m pip install --quiet --disable-pip-version-check --target $(SANDBOX_SITE) -r $(SANDBOX_REQUIREMENTS)
	chmod -R a+rX $(SANDBOX_SITE) && for d in $$(dirname $(SANDBOX_SITE)); do chmod a+rx $$d; done
	touch $@

run: install
	$(PY) -m entrypoints

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

test-unit: install
	$(PY) -m pytest tests/unit -q

test-integration: install
	$(PY) -m pytest tests/integration -q -m "not slow"

test: install lint
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

# Builds the Dockerfile with podman on a debootstrap'd Debian base and checks the running image
# in each sandbox mode (root, podman, runc, debootstrap; .ci/run installs them).
.PHONY: image-test
image-test:
	scripts/image-test.sh

bench: install
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache
