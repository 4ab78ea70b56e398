# A fresh machine needs only `make test` or `make demo`: both install into .venv first when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/mnist.npz

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is resolved together with torchvision by pip (timm needs both; never pin a local CPU wheel).
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Bytecode written (machines that set PYTHONDONTWRITEBYTECODE otherwise recompile harden in each of the suite's CLI and
# torchrun processes, and each pytest worker rewrites every test file's asserts); __pycache__ is ignored by git.
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/harden demo

lint: $(STAMP)
	$(BIN)/ruff check harden tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/attack_throughput.py --data $(DATA)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
