# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ntlab-installed
PYTEST := $(PY) -m pytest -q --doctest-modules tests ntlab
export JUPYTER_CONFIG_DIR   := $(CURDIR)/.jupyter/config
export JUPYTER_DATA_DIR     := $(CURDIR)/.jupyter/data
export JUPYTER_RUNTIME_DIR  := $(CURDIR)/.jupyter/runtime

.PHONY: demo test bench soak clean system

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The main job: ingest the real data into a catalog, build bars, rebuild a Binance book,
# write an HTML report under out/demo/.
demo: $(STAMP)
	$(VENV)/bin/ntlab run templates/demo.ipynb --out out/demo

# System packages the tests need, installed with apt-get when missing: g++ builds the CUDA
# source of the GPU twins for the CPU (tests/test_gpu.py).
system:
	@command -v g++ >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends g++)

# Whole suite with Numba JIT on, then again with NUMBA_DISABLE_JIT=1 so that coverage sees
# the kernel bodies (notebooks run once, in the first pass); coverage is the union.
test: $(STAMP) system
	rm -f .coverage
	$(PYTEST) --cov --cov-report=
	NUMBA_DISABLE_JIT=1 $(PYTEST) -m "not notebook" --cov --cov-append --cov-report=
	$(PY) -m coverage report --fail-under=95

bench: $(STAMP)
	$(VENV)/bin/ntlab bench data --json out/bench/data.json
	$(VENV)/bin/ntlab bench kernels --json out/bench/kernels.json
	$(VENV)/bin/ntlab bench inference --json out/bench/inference.json
	$(VENV)/bin/ntlab bench portfolio --json out/bench/portfolio.json
	$(VENV)/bin/ntlab bench live_latency --json out/bench/live_latency.json
	$(VENV)/bin/ntlab bench websocket --json out/bench/websocket.json

# Soak (about 6 minutes): the live crash test with 100 SIGKILLs instead of the suite's 20, the
# WebSocket fault test with 100 dropped connections instead of 20, the frame fuzz with 1 M frames.
soak: $(STAMP)
	NTLAB_CRASH_KILLS=100 $(PY) -m pytest -q -s tests/test_live_crash.py
	NTLAB_WS_DROPS=100 $(PY) -m pytest -q tests/test_live_ws.py -k faults
	NTLAB_FUZZ_FRAMES=1000000 $(PY) -m pytest -q tests/test_live_wire.py -k fuzz

clean:
	rm -rf $(VENV) out catalog .coverage .jupyter .pytest_cache .hypothesis
