#!/usr/bin/env bash
# The checks only a GPU can run, in one go (at most 8 minutes on one H100/H200):
#   1. the CUDA-only tests (greedy on cuda = target greedy; placements sharing the GPU);
#   2. the executor bench on cuda (ar vs dynamic, batch 1/4/16);
#   3. the placements that fit one GPU (single, separate draft, tp=2 with staged all-reduces).
# Results go to ${OUT:-benchmarks/results}/gpu-<card>/; commit them, naming the card.
# Usage: bash scripts/gpu_check.sh      (CUDA torch installed: see README, "GPU machines")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
card=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
dest=${OUT:-benchmarks/results}/gpu-$card
mkdir -p "$dest"
nvidia-smi > "$dest/nvidia-smi.txt" 2>&1 || true
echo "== 1. CUDA tests on $card ==" | tee "$dest/gpu_check.log"
timeout 180 $PY -m pytest -q tests/executor/test_cuda.py 2>&1 | tee -a "$dest/gpu_check.log"
echo "== 2. bench on cuda ==" | tee -a "$dest/gpu_check.log"
timeout 150 $PY -m specgrove.cli bench --device cuda --prompts benchmarks/prompts/code.jsonl --methods ar,chain,dynamic \
  --batch-sizes 1,4,16 --repeats 2 --out "$dest/bench" 2>&1 | tail -20 | tee -a "$dest/gpu_check.log"
echo "== 3. placements on one GPU ==" | tee -a "$dest/gpu_check.log"
timeout 150 $PY benchmarks/placements.py --device cuda --batch-sizes 4,16 --repeats 2 --out "$dest/placements" 2>&1 \
  | tail -15 | tee -a "$dest/gpu_check.log"
echo "results in $dest"
