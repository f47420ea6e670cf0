# Set-up and the two everyday commands. TORCH selects the torch requirement: the default takes any recent
# release (on a machine with a GPU that is usually a CUDA build); `make test TORCH=torch==2.13.0` pins one.
TORCH ?= torch>=2.2
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup search test test-fast lint

$(BIN)/nas: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/nas

# A real search on the embedded digits data: SPOS on NAS-Bench-201 (the nb201/digits preset), then regularized
# evolution with inherited weights.
search: setup
	$(BIN)/nas search --space nb201 --strategy uniform --dataset digits

# The whole suite (slow end-to-end tests included) and the linter, as CI runs them. Tests run in JOBS processes of
# one thread each (pytest-xdist; the tests that start Ray share one of them), the slowest listed at the end.
JOBS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup --durations=15
	$(BIN)/ruff check .

# Skip the few slow end-to-end tests while developing.
test-fast: setup
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup -m "not slow"

lint: setup
	$(BIN)/ruff check .
