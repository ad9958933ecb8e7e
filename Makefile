# synthloom — one-command setup on a fresh Debian machine (run as root for system packages).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# llama-cpp-python compiles llama.cpp (~5 min on 2 cores): build the wheel once and reuse it.
WHEELS ?= $(HOME)/.cache/synthloom/wheels
LLAMA_CPP_VERSION ?= 0.3.36
APT_PACKAGES := bubblewrap chromium
DEMO_RECIPE ?= metamath
DEMO_ARGS ?= -o num_seeds=6 -o max_depth=1 -o samples=2 --out runs/demo

.PHONY: install system-deps llama-wheel demo test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

llama-wheel: $(VENV)/bin/python
	@mkdir -p $(WHEELS)
	@if ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python $(LLAMA_CPP_VERSION): using cached wheel in $(WHEELS)"; \
	else \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (one time, several minutes)…"; \
		$(BIN)/pip wheel --no-deps --wheel-dir $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); \
	fi

# CPU build of PyTorch for the embedding extra (this machine image ships its wheel on disk)
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev,embed,ray,train,audit

$(VENV)/.installed: pyproject.toml | llama-wheel
	$(BIN)/pip install --quiet --find-links $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet --find-links $(WHEELS) -e ".[$(EXTRAS)]"
	touch $@

install: llama-wheel $(VENV)/.installed

# Debian packages the tests use (the code sandbox needs bubblewrap).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/synthloom run $(DEMO_RECIPE) $(DEMO_ARGS)

# OMP_WAIT_POLICY=PASSIVE: tests run several llama.cpp engines at once (servers + in-process);
# spinning OpenMP threads would starve each other on 2 cores.
test: install system-deps lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -p no:cacheprovider

bench: install system-deps
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

lint: install
	$(BIN)/pip install --quiet ruff
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
