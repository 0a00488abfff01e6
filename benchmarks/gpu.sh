#!/usr/bin/env bash
# Throughput of the papers' Sudoku-Extreme configs on one GPU (bf16, torch.compile, CUDA graphs):
#   bash benchmarks/gpu.sh PUZZLE_FILE OUT_DIR [CONFIG[:BATCH[:NAME]] [--set KEY=VALUE]...]...
# PUZZLE_FILE: one-puzzle-per-line Sudoku file (e.g. ../shared/data/sudoku/puzzles5_forum_hardest_1905_11+.txt).
# CONFIG: example name without .toml; BATCH: global batch (default: the paper's, below);
# NAME: the JSON's name (default CONFIG, or CONFIG-bBATCH when BATCH is not the paper's).
# --set options after a config apply to it alone.
# Default: each paper config at its paper's batch (TRM 768, HRM 384, URM 128).
# Writes OUT_DIR/NAME.json (`rr bench --json-out`) and OUT_DIR/NAME.log.
# RR: the command that runs rr (default `rr`; `python3 -m rrcore` where pip --target left no script).
# LARGEST_BATCH=1: also find each config's largest power-of-two multiple of the batch that fits
# (rr bench --largest-batch: one process per size tried, each compiling again, so minutes more per config);
# MAX_BATCH=N: the largest global batch that search tries (rr bench --max-batch).
set -uo pipefail
puzzles=$1
out=$2
shift 2
rr=${RR:-rr}
declare -A paper_batch=([sudoku-extreme-trm-mlp]=768 [sudoku-extreme-trm-att]=768
                        [sudoku-extreme-hrm]=384 [sudoku-extreme-urm]=128)
[ $# -eq 0 ] && set -- sudoku-extreme-trm-mlp sudoku-extreme-trm-att sudoku-extreme-hrm sudoku-extreme-urm
mkdir -p "$out"

bench() {  # bench SPEC [--set K=V]...
  local spec=$1; shift
  IFS=: read -r config batch name <<< "$spec"
  local paper=${paper_batch[$config]:-}
  batch=${batch:-$paper}
  if [ -z "$name" ]; then
    name=$config
    [ -n "$paper" ] && [ "$batch" != "$paper" ] && name=$config-b$batch
  fi
  echo "== $name (global batch ${batch:-as in the file})"
  local args=(--set "data.train_path=$puzzles" --set data.jobs=0)
  [ -n "$batch" ] && args+=(--set "train.global_batch_size=$batch")
  [ -n "${LARGEST_BATCH:-}" ] && args+=(--largest-batch)
  [ -n "${MAX_BATCH:-}" ] && args+=(--max-batch "$MAX_BATCH")
  # shellcheck disable=SC2086
  $rr bench "examples/$config.toml" --steps 30 --warmup 5 --eval-batches 2 "${args[@]}" "$@" \
    --json-out "$out/$name.json" > "$out/$name.log" 2>&1 || echo "$name failed (see $name.log)"
  python3 - "$out/$name.json" <<'PY' || tail -n 20 "$out/$name.log"
import json, sys
f = json.load(open(sys.argv[1]))
keys = ("global_batch_size", "step_ms", "train_examples_per_second", "peak_memory_gib", "eval_puzzles_per_second",
        "first_step_seconds", "compile_cache_hits", "graph_breaks", "recompiles_after_warmup", "cudagraph_skips",
        "largest_fitting_batch", "largest_fitting_batch_examples_per_second", "warmup_compile_seconds")
print("   " + "  ".join(f"{k}={f[k]}" for k in keys if k in f))
PY
}

while [ $# -gt 0 ]; do
  spec=$1; shift
  sets=()
  while [ $# -gt 0 ] && [ "$1" = "--set" ]; do sets+=("$1" "$2"); shift 2; done
  bench "$spec" "${sets[@]}"
done
