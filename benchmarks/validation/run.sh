#!/usr/bin/env bash
# Calibrate on serving traces (one server per method) of on/off bursts over the calibration code
# prompts, then validate on other code prompts with bursty Gamma arrivals at 40% and 85% of
# capacity. Writes benchmarks/results/validation-cpu/ (or $OUT), with the scenario it validated
# (scenario.toml, naming the profile fitted next to it).
#   [OUT=DIR] bash benchmarks/validation/run.sh [METHODS]
set -euo pipefail
cd "$(dirname "$0")/../.."
METHODS=${1:-ar,chain,sequoia,dynamic}
OUT=${OUT:-benchmarks/results/validation-cpu}
PY=.venv/bin/python
mkdir -p "$OUT/calibration"
rm -f "$OUT/calibration/"*.jsonl
# Two rounds, the methods interleaved: this host's speed drifts by 10-25% over minutes, and a
# method calibrated in one spell only would carry that spell's speed into its cost model.
for round in 1 2; do
  for m in ${METHODS//,/ }; do
    port=$($PY -c "from specgrove.serve.process import free_port; print(free_port())")
    .venv/bin/specgrove serve --method "$m" --max-batch 8 --port "$port" --threads 2 --log-level warning \
        --trace "$OUT/calibration/$m-$round.jsonl" &
    pid=$!
    for _ in $(seq 1 240); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
    .venv/bin/specgrove load benchmarks/validation/calibration_workload.toml --url "http://127.0.0.1:$port" \
        --out "$OUT/calibration/load-$m-$round" --prompts benchmarks/prompts/code_calibration.jsonl --overwrite \
        --no-progress --seed $((101 + round))
    kill -TERM $pid; wait $pid
  done
done
.venv/bin/specgrove calibrate "$OUT"/calibration/*.jsonl --out "$OUT/profile.json" --clients "$OUT"/calibration/load-*
sed 's|^profile = .*|profile = "profile.json"|' benchmarks/validation/scenario.toml > "$OUT/scenario.toml"
.venv/bin/specgrove validate "$OUT/scenario.toml" --workload benchmarks/validation/workload.toml \
    --out "$OUT" --policies "$METHODS" --loads 0.4,0.85 --prompts benchmarks/prompts/code.jsonl --repeats 3 --overwrite
