#!/usr/bin/env bash
# The checks only a GPU can run, in one go (at most 9 minutes on one H100/H200):
#   1. the CUDA-only tests: greedy on cuda = target greedy (torch references and CuPy kernels),
#      placements sharing the GPU, and every CuPy kernel against its torch reference
#      (exact for tree layout and compaction, a stated tolerance for tree attention) and with
#      no host round trip (torch's sync debug mode set to error);
#   2. the kernels' microbenchmark: ragged tree attention against SDPA with a dense mask;
#   3. the executor bench on cuda (ar vs chain vs dynamic, batch 1/4/16), kernels and CUDA graphs
#      on, then the same with the graphs off (what they save);
#   4. the placements that fit one GPU (single, separate draft, tp=2 with staged all-reduces).
# Results go to ${OUT:-benchmarks/results}/gpu-<card>/; commit them, naming the card.
# Usage: bash scripts/gpu_check.sh      (CUDA torch and CuPy installed: see docs/kernels.md)
# On a machine with no network, CuPy can travel as a wheel in .whl/ (docs/kernels.md says how);
# this script installs it from there into /tmp/site when CuPy does not import.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! $PY -c "import cupy" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
card=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
dest=${OUT:-benchmarks/results}/gpu-$card
mkdir -p "$dest"
nvidia-smi > "$dest/nvidia-smi.txt" 2>&1 || true
$PY -c "import cupy; print('cupy', cupy.__version__)" > "$dest/cupy.txt" 2>&1 || echo "cupy does not import: the kernels' checks skip" | tee "$dest/cupy.txt"
echo "== 1. CUDA tests on $card ==" | tee "$dest/gpu_check.log"
timeout 200 $PY -m pytest -q -rs tests/executor/test_cuda.py tests/kernels 2>&1 | tee -a "$dest/gpu_check.log"
echo "== 2. kernels microbenchmark ==" | tee -a "$dest/gpu_check.log"
timeout 100 $PY benchmarks/kernels.py --device cuda --out "$dest/kernels" 2>&1 | tail -30 | tee -a "$dest/gpu_check.log"
echo "== 3. bench on cuda ==" | tee -a "$dest/gpu_check.log"
timeout 120 $PY -m specgrove.cli bench --device cuda --prompts benchmarks/prompts/code.jsonl --methods ar,chain,dynamic \
  --batch-sizes 1,4,16 --repeats 2 --out "$dest/bench" 2>&1 | tail -20 | tee -a "$dest/gpu_check.log"
echo "== 3b. bench on cuda, CUDA graphs off ==" | tee -a "$dest/gpu_check.log"
timeout 120 $PY -m specgrove.cli bench --device cuda --prompts benchmarks/prompts/code.jsonl --methods ar,chain,dynamic \
  --batch-sizes 1,4,16 --repeats 2 --cuda-graphs off --out "$dest/bench-eager" 2>&1 | tail -20 | tee -a "$dest/gpu_check.log"
echo "== 4. placements on one GPU ==" | tee -a "$dest/gpu_check.log"
timeout 100 $PY benchmarks/placements.py --device cuda --batch-sizes 4,16 --repeats 2 --out "$dest/placements" 2>&1 \
  | tail -15 | tee -a "$dest/gpu_check.log"
echo "results in $dest"
