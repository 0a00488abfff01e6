"""rr beside the reference code on one GPU: each config's step time and peak memory.

    python benchmarks/reference/compare.py --repos DIR [--configs trm-mlp,hrm] [--steps 30]
        [--warmup 5] [--puzzles FILE] [--out benchmarks/results/reference-compare.json] [--dry-run]

DIR holds the user's clones, as ``git clone`` names them: DIR/TinyRecursiveModels,
DIR/HRM, DIR/URM. For each config, one process after another on the same GPU:
``rr data build`` finds (or builds) the example's data set and prints its folder,
``reference_step.py`` times the reference's own training step on that folder, and
``rr bench --json-out`` times rr's. The table goes to ``--out`` (JSON) and beside it as
markdown (same name, ``.md``), and is printed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REFERENCE_STEP = HERE / "reference_step.py"


@dataclass(frozen=True)
class Config:
    """One row: an rr example and the reference's overrides that match it."""

    example: str  # file under examples/
    arch: str  # reference_step.py --arch
    clone: str  # folder of the clone under --repos
    batch: int  # the paper's global batch
    overrides: tuple[str, ...]  # the reference's own command line for this config (its README or script)


# Each reference's overrides are its README's (TRM, HRM) or script's (URM) for Sudoku-Extreme;
# the batch, set by the harness, is the one rr's examples are timed at (benchmarks/gpu.sh).
TRM_SUDOKU = (  # TinyRecursiveModels' README, "Sudoku-Extreme"
    "arch=trm",
    "evaluators=[]",
    "epochs=50000",
    "eval_interval=5000",
    "lr=1e-4",
    "puzzle_emb_lr=1e-4",
    "weight_decay=1.0",
    "puzzle_emb_weight_decay=1.0",
    "arch.L_layers=2",
    "arch.H_cycles=3",
    "arch.L_cycles=6",
    "ema=True",
)

CONFIGS = {
    "trm-mlp": Config(
        "sudoku-extreme-trm-mlp.toml",
        "trm",
        "TinyRecursiveModels",
        768,
        (*TRM_SUDOKU, "arch.mlp_t=True", "arch.pos_encodings=none"),
    ),
    "trm-att": Config("sudoku-extreme-trm-att.toml", "trm", "TinyRecursiveModels", 768, TRM_SUDOKU),
    "hrm": Config(
        "sudoku-extreme-hrm.toml",
        "hrm",
        "HRM",
        384,
        (
            "epochs=20000",
            "eval_interval=2000",
            "lr=7e-5",
            "puzzle_emb_lr=7e-5",
            "weight_decay=1.0",
            "puzzle_emb_weight_decay=1.0",
        ),
    ),  # fmt: skip
    "urm": Config(
        "sudoku-extreme-urm.toml",
        "urm",
        "URM",
        128,
        (
            "arch=urm",
            "arch.loops=16",
            "arch.H_cycles=2",
            "arch.L_cycles=6",
            "arch.num_layers=4",
            "epochs=50000",
            "eval_interval=2000",
            "lr=1e-4",
            "puzzle_emb_lr=1e-4",
            "weight_decay=1.0",
            "puzzle_emb_weight_decay=1.0",
            "+ema=True",
        ),
    ),  # fmt: skip
}


def data_command(rr: list[str], config: Config, puzzles: str | None) -> list[str]:
    """``rr data build`` of the example's data set; its last stdout line is the folder."""
    command = [*rr, "data", "build", f"examples/{config.example}"]
    return command + (["--set", f"train_path={puzzles}"] if puzzles else [])


def rr_command(
    rr: list[str], config: Config, out: Path, steps: int, warmup: int, puzzles: str | None
) -> list[str]:  # fmt: skip
    """``rr bench`` of the example at the config's batch, training steps only."""
    command = [*rr, "bench", f"examples/{config.example}", "--steps", str(steps), "--warmup", str(warmup)]
    command += ["--eval-batches", "0", "--set", f"train.global_batch_size={config.batch}", "--set", "data.jobs=0"]
    if puzzles:
        command += ["--set", f"data.train_path={puzzles}"]
    return command + ["--json-out", str(out)]


def reference_command(
    python: str, repos: Path, config: Config, data: str, out: Path, steps: int, warmup: int
) -> list[str]:  # fmt: skip
    """``reference_step.py`` for the config, on the data folder ``data``."""
    command = [python, str(REFERENCE_STEP), "--repo", str(repos / config.clone), "--arch", config.arch]
    command += ["--data", data, "--batch", str(config.batch), "--steps", str(steps), "--warmup", str(warmup)]
    for override in config.overrides:
        command += ["--set", override]
    return command + ["--out", str(out)]


def row(name: str, config: Config, reference: dict[str, Any] | None, rr: dict[str, Any] | None) -> dict[str, Any]:
    """One table row from the two JSON files (None where a side failed)."""
    reference, rr = reference or {}, rr or {}
    ref_ms, rr_ms = reference.get("step_ms"), rr.get("step_ms")
    devices = {d for d in (reference.get("device"), rr.get("device")) if d}
    return {
        "config": name,
        "example": config.example,
        "global_batch_size": config.batch,
        "reference_step_ms": ref_ms,
        "reference_peak_gib": reference.get("peak_memory_gib"),
        "rr_step_ms": rr_ms,
        "rr_peak_gib": rr.get("peak_memory_gib"),
        "speedup": round(ref_ms / rr_ms, 2) if ref_ms and rr_ms else None,
        "device": " / ".join(sorted(devices)) or None,
        "same_device": len(devices) == 1,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table; a missing figure reads 'failed'."""

    def cell(value: Any, unit: str = "") -> str:
        return "failed" if value is None else f"{value}{unit}"

    lines = [
        "| config (batch) | reference ms/step | reference peak GiB | rr ms/step | rr peak GiB | rr speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} ({r['global_batch_size']}) | {cell(r['reference_step_ms'])} | "
            f"{cell(r['reference_peak_gib'])} | {cell(r['rr_step_ms'])} | {cell(r['rr_peak_gib'])} | "
            f"{'-' if r['speedup'] is None else str(r['speedup']) + 'x'} |"
        )
    devices = sorted({r["device"] for r in rows if r["device"]})
    if devices:
        lines.append(f"\nDevice: {', '.join(devices)}.")
    return "\n".join(lines)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _run(command: list[str], log: Path) -> subprocess.CompletedProcess:
    """Run ``command`` from the repository root in its own process; stdout and stderr go to ``log``."""
    print("$ " + shlex.join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    log.write_text(f"$ {shlex.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  failed ({done.returncode}): {last}  [log: {log}]", flush=True)
    return done


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=Path, required=True, help="folder with TinyRecursiveModels/, HRM/, URM/")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--puzzles", help="one-puzzle-per-line file for the examples' data.train_path (default: theirs)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reference-compare.json")
    parser.add_argument("--rr", default="rr", help="command that runs rr (e.g. 'python -m rrcore')")
    parser.add_argument("--python", default=sys.executable, help="Python that runs reference_step.py")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    args.names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in args.names if name not in CONFIGS]
    if unknown or not args.names:
        parser.error(f"--configs: unknown {unknown or 'empty'}; choose from {', '.join(CONFIGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rr, repos = shlex.split(args.rr), args.repos.resolve()
    logs = args.out.parent / "reference-compare-logs"
    if not args.dry_run:
        logs.mkdir(parents=True, exist_ok=True)
    rows, figures = [], {}
    for name in args.names:
        config = CONFIGS[name]
        ref_json, rr_json = logs / f"reference-{name}.json", logs / f"rr-{name}.json"
        build = data_command(rr, config, args.puzzles)
        bench = rr_command(rr, config, rr_json, args.steps, args.warmup, args.puzzles)
        if args.dry_run:
            step = reference_command(args.python, repos, config, "$DATA", ref_json, args.steps, args.warmup)
            print(f"# {name}\nDATA=$({shlex.join(build)} | tail -n 1)")
            print(shlex.join(step).replace("'$DATA'", '"$DATA"'))
            print(shlex.join(bench))
            continue
        built = _run(build, logs / f"data-{name}.log")
        data = (built.stdout.strip().splitlines() or [""])[-1]
        reference = rr_figures = None
        if built.returncode == 0 and data:
            step = reference_command(args.python, repos, config, data, ref_json, args.steps, args.warmup)
            ref_json.unlink(missing_ok=True)
            if _run(step, logs / f"reference-{name}.log").returncode == 0:
                reference = _read_json(ref_json)
        rr_json.unlink(missing_ok=True)
        if _run(bench, logs / f"rr-{name}.log").returncode == 0:
            rr_figures = _read_json(rr_json)
        rows.append(row(name, config, reference, rr_figures))
        figures[name] = {"reference": reference, "rr": rr_figures}
    if args.dry_run:
        return 0
    table = markdown_table(rows)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "steps": args.steps,
        "warmup": args.warmup,
        "rows": rows,
        "figures": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0 if all(r["speedup"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
