# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv if missing and install the core and the three plugins (editable), with a CPU
# build of torch when none is installed.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
TORCH  ?= torch==2.13.0
STAMP   = $(VENV)/.egm-installed
PLUGINS = plugins/egm-discrete plugins/egm-continuous plugins/egm-mixed

.PHONY: demo test install benchmark clean docs

$(STAMP): pyproject.toml plugins/egm-discrete/pyproject.toml plugins/egm-continuous/pyproject.toml plugins/egm-mixed/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q --disable-pip-version-check $(TORCH)
	$(PIP) install -q --disable-pip-version-check "setuptools>=64" -e ".[test]" $(addprefix -e ,$(PLUGINS))
	@touch $(STAMP)

install: $(STAMP)

# one torch thread: on a shared 2-core machine a second thread oversubscribes the cores (README, "Threads")
THREADS ?= 1
demo: $(STAMP)
	$(VENV)/bin/egm demo --out runs/demo --force --set train.threads=$(THREADS)

test: $(STAMP)
	$(PY) -m pytest -q

# regenerate the key reference in docs/configuration.md from egm_framework/config.py
docs: $(STAMP)
	$(PY) -m egm_framework.config_reference --write docs/configuration.md

benchmark: $(STAMP)
	$(PY) benchmarks/step_time.py

clean:
	rm -rf runs .pytest_cache
