# One command for the demo, one for the tests; each sets up .venv on a fresh clone.
# TORCH_SPEC picks the PyTorch build installed first (CPU build on CPU-only machines;
# on GPU machines use e.g. `make demo TORCH_SPEC=torch` for the CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medmae-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medmae study run studies/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_loader.py --quick
	$(PY) benchmarks/bench_mae.py

clean:
	rm -rf $(VENV) demo_out studies_out runs mlruns .pytest_cache
