# Two entry points: `make run` (the app on the embedded default) and `make test`.
# Both create .venv if missing and install only when the requirements changed.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PORT ?= 8501
# `make run SHARED=1`: a shared server (each browser session sees only its own runs and uploads; README).
SHARED ?= $(or $(UNLEARN_SHARED),0)
# On a shared server a crash shows its type, not a stack trace with server paths.
ERROR_DETAILS := $(if $(filter 1 true yes on,$(SHARED)),type,full)
REQ_HASH := $(shell cat requirements.txt | sha1sum | cut -c1-12)
TEST_HASH := $(shell cat requirements.txt requirements-test.txt | sha1sum | cut -c1-12)
RUN_STAMP := $(VENV)/.stamp-run-$(REQ_HASH)
TEST_STAMP := $(VENV)/.stamp-test-$(TEST_HASH)

.PHONY: run test venv test-deps browser bench clean-cache

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@# Compile umap's numba kernels into numba's on-disk cache once (about 25 s), so no process pays for them.
	$(PY) -W ignore -c "from unlearn_core.umapfit import warm_umap; print(f'UMAP kernels compiled in {warm_umap():.0f} s')"
	rm -f $(VENV)/.stamp-run-*
	touch $@

$(TEST_STAMP): requirements.txt requirements-test.txt $(RUN_STAMP)
	$(PY) -m pip install --quiet -r requirements-test.txt
	rm -f $(VENV)/.stamp-test-*
	touch $@

venv: $(RUN_STAMP)

test-deps: $(TEST_STAMP)

browser:
	@bash scripts/ensure_chromium.sh

run: $(RUN_STAMP)
	UNLEARN_SHARED=$(SHARED) $(PY) -m unlearn_app.serve --server.headless true --server.port $(PORT) \
		--browser.gatherUsageStats false --server.fileWatcherType none \
		--server.maxUploadSize $${UNLEARN_MAX_UPLOAD_MB:-200} --client.showErrorDetails $(ERROR_DETAILS)

test: $(TEST_STAMP) browser
	$(PY) -m pytest

bench: $(TEST_STAMP)
	$(PY) benchmarks/bench_training_cache.py
	$(PY) benchmarks/bench_app.py
