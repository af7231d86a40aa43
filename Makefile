# The two README commands are `make demo` and `make test`; both set up what
# they need (.ci/bootstrap) first.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1

.PHONY: setup demo test test-fast lint bench bench-quick report clean

setup:
	@bash .ci/bootstrap

demo: setup
	$(VENV)/bin/visiontfx run --config pipeline/configs/demo.yaml

test: setup
	$(PY) -m pytest tests -q

test-fast: setup
	$(PY) -m pytest tests -q -m "not integration"

lint: setup
	$(VENV)/bin/ruff check .

# Every benchmark at full size (long: see docs/benchmarks.md), then the doc's tables.
bench: setup
	$(PY) -m bench.run_all

# Every benchmark at its smoke-test size (results in bench/results/, docs untouched).
bench-quick: setup
	$(PY) -m bench.run_all --quick

clean:
	rm -rf outputs serving_model .pytest_cache
