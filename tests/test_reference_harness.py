"""benchmarks/reference: the table, the commands, the data view and reference_step.py's refusals (CPU)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "reference"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"reference_harness_{name}", HARNESS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


compare = _load("compare")
reference_step = _load("reference_step")


def _fake_repo(root: Path, arch: str, pretrain: str = "") -> Path:
    """A folder with the files that identify ``arch``'s reference repository."""
    for name in ("pretrain.py", "config/cfg_pretrain.yaml", reference_step.REFERENCES[arch].marker):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "pretrain.py").write_text(pretrain)
    return root


def test_row_gives_the_speedup_and_failed_sides():
    config = compare.CONFIGS["hrm"]
    ref = {"step_ms": 45.2, "peak_memory_gib": 5.5, "device": "NVIDIA H100 80GB HBM3"}
    rr = {"step_ms": 42.5, "peak_memory_gib": 4.9, "device": "NVIDIA H100 80GB HBM3"}
    row = compare.row("hrm", config, ref, rr)
    assert row["speedup"] == 1.06
    assert (row["reference_peak_gib"], row["rr_peak_gib"], row["global_batch_size"]) == (5.5, 4.9, 384)
    assert row["same_device"]
    failed = compare.row("hrm", config, None, rr)
    assert failed["reference_step_ms"] is None and failed["speedup"] is None

    table = compare.markdown_table([row, failed])
    lines = table.splitlines()
    assert lines[2] == "| hrm (384) | 45.2 | 5.5 | 42.5 | 4.9 | 1.06x |"
    assert lines[3] == "| hrm (384) | failed | failed | 42.5 | 4.9 | - |"
    assert "NVIDIA H100 80GB HBM3" in table


def test_row_flags_two_devices():
    row = compare.row("urm", compare.CONFIGS["urm"], {"step_ms": 2.0, "device": "A"}, {"step_ms": 1.0, "device": "B"})
    assert not row["same_device"] and row["device"] == "A / B"


def test_commands_match_the_example_and_the_reference_config(tmp_path):
    config = compare.CONFIGS["trm-mlp"]
    bench = compare.rr_command(["rr"], config, tmp_path / "rr.json", 30, 5, "p.txt")
    assert bench[:3] == ["rr", "bench", "examples/sudoku-extreme-trm-mlp.toml"]
    assert "train.global_batch_size=768" in bench and "data.train_path=p.txt" in bench
    assert bench[-2:] == ["--json-out", str(tmp_path / "rr.json")]
    assert (compare.ROOT / "examples" / config.example).is_file()

    step = compare.reference_command("python", tmp_path, config, "/data", tmp_path / "ref.json", 30, 5)
    assert step[step.index("--repo") + 1] == str(tmp_path / "TinyRecursiveModels")
    assert step[step.index("--arch") + 1] == "trm" and step[step.index("--batch") + 1] == "768"
    sets = [step[i + 1] for i, word in enumerate(step) if word == "--set"]
    assert {"arch.mlp_t=True", "arch.pos_encodings=none", "arch.H_cycles=3", "arch.L_cycles=6"} <= set(sets)
    assert compare.data_command(["rr"], config, None) == ["rr", "data", "build", "examples/sudoku-extreme-trm-mlp.toml"]


def test_dry_run_prints_the_chosen_configs_only(tmp_path, capsys):
    assert (
        compare.main(["--repos", str(tmp_path), "--configs", "hrm,urm", "--dry-run", "--out", str(tmp_path / "o.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "# hrm" in out and "# urm" in out and "# trm-mlp" not in out
    assert "--arch urm" in out and "--set +ema=True" in out and '--data "$DATA"' in out
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(SystemExit):
        compare.main(["--repos", str(tmp_path), "--configs", "gpt", "--dry-run"])


def test_hydra_overrides_name_each_reference_data_key(tmp_path):
    assert reference_step.hydra_overrides("trm", tmp_path, 768, ["ema=True"]) == [
        f"data_paths=[{tmp_path}]", "global_batch_size=768", "ema=True"
    ]  # fmt: skip
    assert reference_step.hydra_overrides("hrm", tmp_path, 384, [])[0] == f"data_path={tmp_path}"


def test_staged_data_adds_total_puzzles_and_links_the_arrays(tmp_path):
    split = tmp_path / "built" / "train"
    split.mkdir(parents=True)
    np.save(split / "all__puzzle_identifiers.npy", np.zeros(7, dtype=np.int32))
    np.save(split / "all__inputs.npy", np.ones((7, 81), dtype=np.int32))
    (split / "dataset.json").write_text(json.dumps({"sets": ["all"], "seq_len": 81}))
    staged = reference_step.stage_data(tmp_path / "built", tmp_path / "staged")
    metadata = json.loads((staged / "train" / "dataset.json").read_text())
    assert metadata == {"sets": ["all"], "seq_len": 81, "total_puzzles": 7}
    assert (staged / "train" / "all__inputs.npy").is_symlink()
    with pytest.raises(reference_step.Refusal, match="not a built data set"):
        reference_step.stage_data(tmp_path / "nothing", tmp_path / "x")


def _reference_step(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HARNESS / "reference_step.py"), *args], capture_output=True, text=True, timeout=60
    )


def test_refuses_a_folder_that_is_not_the_reference(tmp_path):
    done = _reference_step("--repo", str(tmp_path), "--arch", "trm", "--data", str(tmp_path), "--batch", "8",
                           "--out", str(tmp_path / "o.json"))  # fmt: skip
    assert done.returncode == reference_step.EXIT_REFUSED
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a clone of SamsungSAILMontreal/TinyRecursiveModels" in lines[0]
    assert not (tmp_path / "o.json").exists()


def test_refuses_without_cuda(tmp_path):
    repo = _fake_repo(tmp_path / "HRM", "hrm")
    done = _reference_step("--repo", str(repo), "--arch", "hrm", "--data", str(tmp_path), "--batch", "8",
                           "--out", str(tmp_path / "o.json"))  # fmt: skip
    assert done.returncode == reference_step.EXIT_REFUSED
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]


def test_a_missing_package_names_what_to_pip_install(tmp_path, monkeypatch):
    repo = _fake_repo(tmp_path / "URM", "urm", pretrain="import adam_atan2_backend_not_here\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "pretrain", raising=False)
    with pytest.raises(reference_step.Refusal, match="needs 'adam_atan2_backend_not_here'"):
        reference_step.import_reference(repo)
    assert reference_step.pip_package("hydra") == "hydra-core"
    assert reference_step.pip_package("flash_attn.flash_attn_interface").startswith("flash-attn")
