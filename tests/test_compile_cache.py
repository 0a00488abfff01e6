"""Compiled code is cached beside the data sets, so a later run of the same shapes skips
most compilation (torch's default place, the temporary folder, is often emptied between
jobs on clusters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from toy_helpers import toy_experiment

from rrcore.contracts.config import load_experiment
from rrcore.training.build import build_run
from rrcore.training.compiling import use_compile_cache


def _bench(path, env, out):
    command = [sys.executable, "-m", "rrcore", "bench", str(path), "--steps", "1", "--warmup", "1"]
    done = subprocess.run(
        [*command, "--eval-batches", "0", "--json-out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def test_a_second_compiled_run_reuses_the_first_ones_compiled_code(toy_env, tmp_path):
    env = {key: value for key, value in toy_env.items() if key != "TORCHINDUCTOR_CACHE_DIR"}
    path = toy_experiment(tmp_path / "exp.toml", compile='"on"')
    first = _bench(path, env, tmp_path / "first.json")
    assert first["compile"] and first["graph_breaks"] == 0 and first["autotune_pointwise"] is False
    assert any((tmp_path / "cache" / "compile").iterdir()), "nothing was cached beside the data sets"
    second = _bench(path, env, tmp_path / "second.json")
    assert second["compile_cache_hits"] > first["compile_cache_hits"], (first, second)
    # Where the first step went: the cached run skips inductor's compilation, not dynamo's tracing.
    cold, warm = first["warmup_compile_seconds"], second["warmup_compile_seconds"]
    assert 0 < cold["dynamo_tracing"] < cold["total"] <= first["first_step_seconds"], cold
    assert warm["inductor"] < cold["inductor"] / 2, (cold, warm)


def test_an_explicit_torchinductor_cache_dir_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    use_compile_cache(tmp_path / "cache")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    use_compile_cache(tmp_path / "cache")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "compile")


def test_pointwise_autotuning_is_off_unless_the_experiment_asks_for_it(toy_registry, tmp_path):
    """Skipping it shortens the first compiled step on a GPU; train.autotune_pointwise brings it back."""
    import torch._inductor.config as inductor_config

    path = toy_experiment(tmp_path / "exp.toml", compile='"on"')
    for overrides, expected in (([], False), (["train.autotune_pointwise=true"], True), ([], False)):
        build_run(load_experiment(path, overrides), toy_registry, optimizers=False)
        assert inductor_config.triton.autotune_pointwise is expected, overrides
