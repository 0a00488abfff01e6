"""A third party's way through docs/writing-plugins.md, end to end: ``rr new-plugin``, its own
model (not TRM-shaped) in place of the template's, the example composed with rr's 4x4 base,
a short training run, ``rr export``, a wheel, and that wheel installed beside rr's own wheels
in a separate environment, which loads the export and scores it as the training one does.

The separate environment is the one ``.ci/packages`` leaves (``build/release/venv``: rrcore
and the bundled plugins installed from their wheels only, no system site packages; another
with ``RR_RELEASE_DIR``); CI runs ``.ci/packages`` before the tests. Building that anew here
would repeat its two minutes. The test installs the new plugin's wheel into it (replacing an
earlier one). ``-m "not third_party"`` deselects it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.third_party

ROOT = Path(__file__).resolve().parents[1]
RELEASE = Path(os.environ.get("RR_RELEASE_DIR", ROOT / "build" / "release"))
VENV, TOOLS = RELEASE / "venv", RELEASE / "tools"

# The third party's model: `layers` blocks with weights of their own, each applied once per ACT
# step (no H/L cycles, no gradient-free cycles, one state), and a learned gate that decides per
# position how much of the new state replaces the carried one.
MODEL = '''"""The gatedstack model: a stack of distinct blocks and a gated state update per ACT step."""

from __future__ import annotations

import attrs
import torch
from rrcore.api import (
    Batch,
    CastedLinear,
    InnerCarry,
    ModelContext,
    Outputs,
    PostNormBlock,
    ReasoningHeads,
    ReasoningModel,
    ReasoningModelConfig,
    at_least,
)


@attrs.define
class GatedstackConfig(ReasoningModelConfig):
    """The shared keys of every rr model and ``layers``: distinct blocks per ACT step."""

    layers: int = attrs.field(default=2, validator=at_least(1))


class Gatedstack(ReasoningModel):
    """z' = z + g * (blocks(z + x) - z), g = sigmoid(W [z, blocks(z + x)])."""

    predicts_q_continue = False

    def __init__(self, config: GatedstackConfig, context: ModelContext) -> None:
        super().__init__(config, context)
        self.blocks = torch.nn.ModuleList(PostNormBlock.from_config(config) for _ in range(config.layers))
        self.gate = CastedLinear(2 * config.hidden_size, config.hidden_size, bias=True)
        self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size,
                                    self.embed_input.puzzle_emb_len)
        self.register_carry(z=None)  # starts, and restarts where a row halted, at zero

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]:
        rotary = self.embed_input.rotary()
        x = self.embed_input(batch["inputs"], batch["puzzle_identifiers"])  # (B, S, D)
        z = carry["z"]
        h = z + x
        for block in self.blocks:
            h = block(h, rotary)
        gate = torch.sigmoid(self.gate(torch.cat([z, h], dim=-1)))  # (B, S, D)
        z = z + gate * (h - z)
        return {"z": z.detach()}, self.heads(z)
'''


def _run(command: list, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: the template no longer holds {old!r}; update this test"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.skipif(
    not (VENV / "bin" / "rr").exists() or not (TOOLS / "bin" / "python").exists(),
    reason=f"no {VENV} with rr's wheels installed: run .ci/packages first (CI runs it before the tests)",
)
def test_a_new_model_plugin_trains_exports_and_loads_from_its_wheel_elsewhere(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RR_LOAD_PLUGINS", "VIRTUAL_ENV")}
    env["RR_CACHE_DIR"] = str(tmp_path / "cache")
    rr = [sys.executable, "-m", "rrcore"]
    plugin = tmp_path / "rr-gatedstack"

    # 1. Scaffold, then make it the third party's: their model, its key in the example and README.
    _run([*rr, "new-plugin", "gatedstack", "--kind", "model", "--output", plugin, "--author",
          "Ada Lovelace <ada@example.org>", "--url", "https://example.org/rr-gatedstack"], env, tmp_path)  # fmt: skip
    (plugin / "rr_gatedstack" / "model.py").write_text(MODEL, encoding="utf-8")
    _replace(plugin / "examples" / "sudoku4x4.toml", "H_cycles = 2\nL_cycles = 2\n", "layers = 2\n")
    readme = plugin / "README.md"
    own_keys = readme.read_text(encoding="utf-8").split("`gatedstack`'s own keys:")[1].split("The keys every")[0]
    _replace(readme, own_keys, "\n\n| key | type | default | meaning |\n|---|---|---|---|\n"
             "| `layers` | int | 2 | distinct blocks per ACT step |\n\n")  # fmt: skip
    _replace(
        plugin / "tests" / "test_gatedstack.py",
        '"H_cycles": 2,\n                             "L_cycles": 2}',
        '"layers": 2}',
    )
    assert 'base = "base/sudoku4x4.toml"' in (plugin / "examples" / "sudoku4x4.toml").read_text()

    # 2. Its wheel, built as docs/writing-plugins.md says (python -m build; the wheel alone here).
    _run([TOOLS / "bin" / "python", "-m", "build", "--wheel", "--outdir", tmp_path / "wheels", plugin], env, tmp_path)
    (wheel,) = (tmp_path / "wheels").glob("rr_gatedstack-0.1.0-*.whl")

    # 3. Where it was written: installed (here into a folder on PYTHONPATH), its example composed
    # with the 4x4 base (rr's, copied by rr new-plugin), trained a few steps, exported and scored.
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", tmp_path / "site", wheel],
         env, tmp_path)  # fmt: skip
    here = {**env, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])}
    settings = [
        "train.max_steps=20", "train.eval_interval=0", "run.device='cpu'", "run.cpu_threads=1",
        f"run.out_dir={str(tmp_path / 'runs')!r}", "data.train_size=100", "data.test_size=16", "data.jobs=1",
    ]  # fmt: skip
    # Its own tests (the conformance kit, the README's keys), alongside the training below.
    tests = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", plugin / "tests"],
        env=here, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    resolved = _run([*rr, "validate", plugin / "examples" / "sudoku4x4.toml"], here, tmp_path).stdout
    assert (
        'plugin = "gatedstack"' in resolved
        and "layers = 2" in resolved
        and 'loss_type = "softmax_cross_entropy"' in resolved
    )
    trained = _run(
        [*rr, "run", plugin / "examples" / "sudoku4x4.toml", *(a for s in settings for a in ("--set", s))],
        here,
        tmp_path,
    )
    assert "rr: finished sudoku4x4-gatedstack at step 20" in trained.stderr
    export = tmp_path / "export"
    _run([*rr, "export", tmp_path / "runs" / "sudoku4x4-gatedstack", export], here, tmp_path)
    _run([*rr, "eval", export, "--output", tmp_path / "eval-here"], here, tmp_path)
    output, _ = tests.communicate(timeout=600)
    assert tests.returncode == 0 and "2 passed" in output, output

    # 4. Elsewhere: the wheel installed beside rr's wheels (its rrcore requirement met by the
    # installed rrcore, nothing fetched), found through its entry point, loads the export.
    elsewhere = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    venv_python = VENV / "bin" / "python"
    with open(RELEASE / "venv.lock", "w") as lock:  # two test runs at once take turns with the venv
        fcntl.flock(lock, fcntl.LOCK_EX)
        _check_elsewhere(venv_python, wheel, export, elsewhere, tmp_path)


def _check_elsewhere(venv_python: Path, wheel: Path, export: Path, elsewhere: dict[str, str], tmp_path: Path) -> None:
    """Install ``wheel`` into the release venv, find it there and load ``export`` with it."""
    subprocess.run([venv_python, "-m", "pip", "uninstall", "--quiet", "--yes", "rr-gatedstack"], env=elsewhere)
    _run([venv_python, "-m", "pip", "install", "--quiet", "--no-index", wheel], elsewhere, tmp_path)
    listing = json.loads(_run([VENV / "bin" / "rr", "list-plugins", "--json"], elsewhere, tmp_path).stdout)
    assert {"name": "gatedstack", "module": "rr_gatedstack.plugin", "distribution": "rr-gatedstack"}.items() <= next(
        p for p in listing["plugins"] if p["name"] == "gatedstack"
    ).items()
    assert listing["failures"] == []
    _run([VENV / "bin" / "rr", "eval", export, "--output", tmp_path / "eval-there"], elsewhere, tmp_path)
    there = json.loads((tmp_path / "eval-there" / "sudoku" / "results.json").read_text())
    assert there == json.loads((tmp_path / "eval-here" / "sudoku" / "results.json").read_text())
    assert there["exact_accuracy"] >= 0 and there["count"] == 16
    solved = subprocess.run(
        [VENV / "bin" / "rr", "solve", export, "12..34..........", "--json"],
        env=elsewhere, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert solved.returncode in (0, 1), solved.stderr  # 1: the answer fails Sudoku's check (20 steps of training)
    assert json.loads(solved.stdout)["steps"] >= 1
