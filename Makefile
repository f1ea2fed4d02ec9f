# plexus: two commands do all set-up on a fresh machine.
#   make demo  -> runs the pipeline on sample_data/ (outputs in demo_output/)
#   make test  -> runs the test suite
# Both create .venv on first use. TORCH_SPEC picks the torch build (default: the local CPU wheel).

PYTHON ?= python3.11
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench sample-data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,distributed]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/plexus demo --out demo_output

test: $(STAMP)
	@bash tests/tools/ensure_chromium.sh
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench

sample-data: $(STAMP)
	$(BIN)/plexus synth --preset sample-ct --seed 11 -o sample_data/ct_phantom
	$(BIN)/plexus synth --preset sample-mr --seed 12 -o sample_data/mr_phantom

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,distributed,bench]"
	$(BIN)/python bench/measure_accuracy.py
	$(BIN)/python bench/measure_speed.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
