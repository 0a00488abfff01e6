#!/usr/bin/env bash
# Throughput of the papers' Sudoku-Extreme configs on one GPU (bf16, torch.compile):
#   bash benchmarks/gpu.sh PUZZLE_FILE OUT_DIR [CONFIG...]
# PUZZLE_FILE: one-puzzle-per-line Sudoku file (e.g. ../shared/data/sudoku/puzzles5_forum_hardest_1905_11+.txt).
# CONFIG: example names without .toml (default: the TRM, HRM and URM Sudoku-Extreme set-ups).
# Writes OUT_DIR/<config>.json with `rr bench` figures and OUT_DIR/<config>.log.
set -uo pipefail
puzzles=$1
out=$2
shift 2
configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(sudoku-extreme-trm-mlp sudoku-extreme-trm-att sudoku-extreme-hrm sudoku-extreme-urm)
mkdir -p "$out"
for config in "${configs[@]}"; do
  echo "== $config"
  rr bench "examples/$config.toml" --steps 30 --warmup 3 --eval-batches 3 \
    --set "data.train_path=$puzzles" --set data.jobs=0 --json-out "$out/$config.json" \
    > "$out/$config.log" 2>&1 || echo "$config failed (see $config.log)"
  tail -n 30 "$out/$config.log"
done
