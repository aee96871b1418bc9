#!/usr/bin/env bash
# Calibrate on serving traces (one server per method) of on/off bursts over the calibration code
# prompts, then validate on other code prompts with bursty Gamma arrivals at 40% and 85% of
# capacity. Writes benchmarks/results/validation-cpu/.
#   bash benchmarks/validation/run.sh [METHODS]
set -euo pipefail
cd "$(dirname "$0")/../.."
METHODS=${1:-ar,chain,sequoia,dynamic}
OUT=benchmarks/results/validation-cpu
PY=.venv/bin/python
mkdir -p "$OUT/calibration"
rm -f "$OUT/calibration/"*.jsonl
for m in ${METHODS//,/ }; do
  port=$($PY -c "from specgrove.serve.process import free_port; print(free_port())")
  .venv/bin/specgrove serve --method "$m" --max-batch 8 --port "$port" --threads 2 --log-level warning \
      --trace "$OUT/calibration/$m.jsonl" &
  pid=$!
  for _ in $(seq 1 240); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
  .venv/bin/specgrove load benchmarks/validation/calibration_workload.toml --url "http://127.0.0.1:$port" \
      --out "$OUT/calibration/load-$m" --prompts benchmarks/prompts/code_calibration.jsonl --overwrite --no-progress
  kill -TERM $pid; wait $pid
done
.venv/bin/specgrove calibrate "$OUT"/calibration/*.jsonl --out "$OUT/profile.json"
.venv/bin/specgrove validate benchmarks/validation/scenario.toml --workload benchmarks/validation/workload.toml \
    --out "$OUT" --policies "$METHODS" --loads 0.4,0.85 --prompts benchmarks/prompts/code.jsonl --repeats 2 --overwrite
