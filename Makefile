# Two commands for a new user:  `make demo` (set up, then run the workflow on the embedded demo)
# and `make test` (set up, then run the tests). VENV can point at a shared environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The dependency stamp changes whenever pyproject.toml does, so a shared venv is rebuilt then.
DEPS_STAMP := $(VENV)/.deps-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: setup demo test paddle-venv labelstudio-venv

setup: $(DEPS_STAMP)
	@# the package itself, editable from this checkout (cheap; done every time so a shared venv follows the checkout)
	@$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v "^ *$$" || true
	@# the default text embedder runs on onnxruntime: export the model once (a no-op when it is there)
	@$(BIN)/shardlens export-embedder

$(DEPS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	@# torch first and pinned: anything that lets pip pick torch itself pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,ui]"
	rm -f $(VENV)/.deps-*
	touch $@

demo: setup
	$(BIN)/snakemake --cores all
	@# the run's report (self-contained HTML; `rule all` has drawn its figures)
	$(BIN)/snakemake --report results/report.html

test: setup
	$(BIN)/python -m pytest -ra

# A separate environment for `ocr.engine: paddleocr` (path: SHARDLENS_PADDLE_VENV, default .venv-paddle)
paddle-venv:
	bash .ci/setup-paddle-venv.sh

# label-studio-sdk for tests/test_label_studio.py (its own OpenCV pin; path: SHARDLENS_LABELSTUDIO_VENV, default .venv-labelstudio)
labelstudio-venv:
	bash .ci/setup-labelstudio-venv.sh
