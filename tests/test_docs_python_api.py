"""docs/python-api.md runs: its ``python`` blocks, in order, in a fresh folder.

The page trains 4 steps of the 4x4 Sudoku demo, loads the run and solves puzzles; the
tests after it reuse that run to hold the API to what the ``rr`` commands do: the same
answers as ``rr solve``, every kind of folder loaded, one-line errors for bad paths, and
the token encodings the page states matching the task plugins.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrcore.cli.main import main
from rrcore.contracts.registry import set_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "python-api.md"


def python_blocks(text: str) -> list[str]:
    """The code of every fenced ``python`` block of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> dict:
    """The namespace the page's blocks leave, run in a folder holding a copy of examples/."""
    folder = tmp_path_factory.mktemp("python-api")
    shutil.copytree(ROOT / "examples", folder / "examples")
    namespace: dict = {"__name__": "python_api_docs"}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RR_LOAD_PLUGINS", raising=False)
        patch.setenv("RR_CACHE_DIR", str(folder / "cache"))
        patch.chdir(folder)
        set_registry(None)
        for number, block in enumerate(python_blocks(DOCS.read_text(encoding="utf-8")), start=1):
            try:
                exec(compile(block, f"{DOCS.name} python block {number}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"{DOCS.name}: python block {number} failed: {error!r}\n{block}") from error
        namespace["folder"] = folder
        yield namespace
    set_registry(None)


def test_the_page_has_blocks_for_each_call():
    code = "\n".join(python_blocks(DOCS.read_text(encoding="utf-8")))
    for call in ("train(", "Solver.from_pretrained(", ".solve(", "evaluate(", "export(", ".encode("):
        assert call in code, f"{DOCS.name} has no example of {call}"


def test_every_python_block_of_the_page_runs(page):
    assert page["result"].status == "finished"
    assert (page["folder"] / "eval-out" / "predictions.jsonl").is_file()


def test_solver_answers_as_rr_solve_does(page):
    """Puzzles solved together in one call give what rr solve --json prints for each alone."""
    run_dir = str(page["result"].run_dir)
    puzzles = ["12.43.1221.34.21", "1.3..4.12..3.1.4", "....3.1..2.1...."]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(page["folder"])
        together = page["solver"].solve(puzzles)
        for puzzle, solution in zip(puzzles, together):
            printed = CliRunner().invoke(main, ["solve", run_dir, puzzle, "--json"])
            assert printed.exit_code in (0, 1), printed.output  # 1: a 4-step model's answer fails the check
            assert json.loads(printed.stdout) == solution.as_dict()


def test_a_checkpoint_folder_loads_as_its_run_does(page):
    from rrcore.research import Solver

    run_dir = page["result"].run_dir
    checkpoint = Solver.from_pretrained(run_dir / "checkpoints" / "step_4", device="cpu")
    assert checkpoint.solve(["12.43.1221.34.21"])[0].as_dict() == page["solutions"][0].as_dict()


def test_bad_folders_and_devices_are_one_line_errors(page, tmp_path):
    from rrcore.research import CheckpointError, ConfigError, Solver, evaluate

    missing = tmp_path / "missing"
    for call in (lambda: Solver.from_pretrained(missing), lambda: evaluate(missing)):
        with pytest.raises(CheckpointError, match=f"{re.escape(str(missing))}: no such folder; expected a run folder"):
            call()
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path}: not a checkpoint")):
        Solver.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="device='gpu'"):
        Solver.from_pretrained(page["result"].run_dir, device="gpu")
    with pytest.raises(ConfigError, match="puzzle 0: the puzzle has 3 tokens; the model reads one row of 16"):
        page["solver"].solve([[1, 2, 3]])
    with pytest.raises(ConfigError, match="batch_size=0: expected at least 1"):
        page["solver"].solve(["12.43.1221.34.21"], batch_size=0)
    with pytest.raises(TypeError, match="a list of puzzles"):
        page["solver"].solve("12.43.1221.34.21")


def _documented(task: str) -> str:
    """The paragraph of the page's token-encoding section that starts with ``**task**``, on one line."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("<!-- token encodings -->")[1].split("<!-- end of token encodings -->")[0]
    return " ".join(section.split(f"**{task}**")[1].split("\n\n")[0].split())


def test_the_documented_vocabularies_are_the_plugins():
    from rr_arc.grids import COLOUR_OFFSET, EOS_TOKEN
    from rr_arc.grids import VOCAB_SIZE as ARC_VOCAB
    from rr_maze.maze import CHARSET
    from rr_maze.maze import VOCAB_SIZE as MAZE_VOCAB
    from rr_rubik.tokens import BLANK, CORNER_BASE, END, MOVE_BASE, SEQ_LEN
    from rr_rubik.tokens import VOCAB_SIZE as RUBIK_VOCAB
    from rr_sudoku.grid import BLANK_TOKEN, DIGIT_OFFSET, geometry

    assert f"vocabulary of {geometry(9).vocab_size} (9x9) or {geometry(4).vocab_size} (4x4)" in _documented("Sudoku")
    assert (BLANK_TOKEN, DIGIT_OFFSET) == (1, 1)
    assert f"vocabulary of {ARC_VOCAB}" in _documented("ARC") and (EOS_TOKEN, COLOUR_OFFSET) == (1, 2)
    assert f"vocabulary of {MAZE_VOCAB}" in _documented("Maze") and f'`"{CHARSET}"`' in _documented("Maze")
    assert f"{SEQ_LEN} tokens, vocabulary of {RUBIK_VOCAB}" in _documented("Rubik 2x2x2")
    assert (BLANK, END, MOVE_BASE, CORNER_BASE) == (1, 2, 3, 12)


def test_import_rrcore_stays_light():
    """``import rrcore`` imports neither torch nor the API module: ``rr --help`` stays fast."""
    code = "import sys, rrcore; assert 'torch' not in sys.modules and 'rrcore.research' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
