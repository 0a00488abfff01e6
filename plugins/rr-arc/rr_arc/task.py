"""Single ARC tasks for ``rr solve``, readable predictions and test-time selection.

A puzzle is a task JSON as the ARC repositories write it, ``{"train": [{"input",
"output"}...], "test": [{"input"[, "output"]}...]}``, or a one-task object keyed by its
id (``{"<task id>": {...}}``, a challenges file holding one task). ``rr solve`` answers
the first test input; a test output given with it is what the check compares to.

Which puzzle embedding a task uses: the data set's blank identifier (0). The papers'
ARC models learn one embedding per task (and per augmented version) from its
demonstration pairs during training; they do not read demonstration pairs at
inference. ``rr solve`` has no learned embedding for a task it is given, so it treats
every task as unseen: the train pairs are checked for format but the model never sees
them, and it answers from what training left in its weights. The note ``rr solve``
prints says so.

Test-time augmentations are the 8 dihedral transforms times the colour permutations
that keep 0 (the background) fixed, as in the data set (:mod:`rr_arc.grids`), each
undone on the prediction. They assume every copy uses the same puzzle embedding,
which holds for the blank identifier; the evaluation split of a built ARC data set
already holds each task's augmented versions with their own embeddings, which the
``arc`` evaluator votes over.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from rr_arc.grids import (
    MAX_GRID_SIZE,
    NUM_COLOURS,
    crop,
    encode,
    inverse_permutation,
    random_colour_permutation,
    token_lut,
)
from rr_arc.reader import ArcFormatError, parse_task
from rrcore.api import NUM_DIHEDRAL, Check, Puzzle, PuzzleError, dihedral, inverse_dihedral

_SOURCE = "task JSON"


def grid_of(tokens: np.ndarray) -> np.ndarray:
    """The grid on a canvas encoded at the top-left (colours 0-9), cropped as the
    ``arc`` evaluator crops; (0, 0) when the canvas holds no grid there."""
    canvas = np.asarray(tokens).reshape(1, MAX_GRID_SIZE, MAX_GRID_SIZE)
    moved, heights, widths = crop(canvas, np.zeros((1, 2), dtype=np.int64))
    return (moved[0, : heights[0], : widths[0]].astype(np.int64) - 2).astype(np.uint8)


class ArcPuzzleTask:
    """The ``arc`` :class:`rrcore.contracts.protocols.PuzzleTask`: one test input of a task JSON."""

    def __init__(self, data_config: Any, metadata: Any) -> None:
        self.blank_identifier = metadata.blank_identifier_id
        self.augmentations = NUM_DIHEDRAL * math.factorial(NUM_COLOURS - 1)

    def parse(self, text: str) -> Puzzle:
        """The first test input as tokens, its test output (if given) as the answer;
        :class:`PuzzleError` names what is wrong with the JSON."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise PuzzleError(f"not a task JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
        task_id = ""
        if isinstance(raw, dict) and len(raw) == 1 and "train" not in raw and "test" not in raw:
            ((task_id, raw),) = raw.items()
        if not isinstance(raw, dict) or "train" not in raw or "test" not in raw:
            shown = sorted(raw)[:4] if isinstance(raw, dict) else type(raw).__name__
            raise PuzzleError(
                f"expected a task object with 'train' and 'test' lists (or one such object keyed "
                f"by its task id), got {shown}"
            )
        name = task_id or "(no id)"
        try:
            task = parse_task(name, "", raw, _SOURCE)
        except ArcFormatError as error:
            message = str(error).removeprefix(f"{_SOURCE}: task {name}").lstrip(":, ")
            raise PuzzleError(message) from None
        grid = task.test_inputs[0]
        which = f"test input 1 of {len(task.test_inputs)}" if len(task.test_inputs) > 1 else "the test input"
        named = f"task {task_id}: " if task_id else ""
        note = (
            f"{named}solving {which} ({grid.shape[0]}x{grid.shape[1]}) "
            f"with the blank puzzle embedding (identifier {self.blank_identifier}): rr solve treats every "
            f"task as unseen, so the model does not see its {len(task.train)} train pairs and answers "
            f"from its trained weights alone"
        )
        return Puzzle(encode(grid).reshape(-1), answer=task.test_outputs[0], note=note)

    def decode(self, tokens: np.ndarray) -> str:
        """The grid on the canvas as JSON rows, e.g. ``[[0,7],[7,0]]`` (``[]``: no grid)."""
        return json.dumps(grid_of(tokens).tolist(), separators=(",", ":"))

    def render(self, tokens: np.ndarray) -> str:
        """The grid over lines, one digit (colour) per cell."""
        grid = grid_of(tokens)
        if not grid.size:
            return "(no grid: the top-left cell holds no colour)"
        return "\n".join(" ".join(str(cell) for cell in row) for row in grid)

    def check(self, inputs: np.ndarray, prediction: np.ndarray, answer: np.ndarray | None = None) -> Check:
        """Equal to the test output ``answer`` (cell for cell, same shape); without one,
        only whether the model drew a grid at all."""
        grid = grid_of(prediction)
        if not grid.size:
            return Check(False, "the model drew no grid (the top-left cell holds no colour)")
        shape = f"{grid.shape[0]}x{grid.shape[1]}"
        if answer is None:
            return Check(None, f"no answer to check (the task JSON has no test output); a {shape} grid")
        answer = np.asarray(answer)
        if grid.shape != answer.shape:
            return Check(False, f"a {shape} grid; the test output is {answer.shape[0]}x{answer.shape[1]}")
        wrong = np.argwhere(grid != answer)
        if len(wrong):
            r, c = wrong[0]
            return Check(
                False,
                f"{len(wrong)} of {grid.size} cells differ from the test output (first at row {r + 1}, column {c + 1})",
            )
        return Check(True, f"matches the test output ({shape})")

    def augment(self, inputs: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """(N, count, 900) copies: copy 0 unchanged, the others a random dihedral transform
        and colour permutation each; returns them with the transforms and permutations."""
        inputs = np.asarray(inputs)
        transforms = rng.integers(0, NUM_DIHEDRAL, size=(inputs.shape[0], count))
        perms = np.stack([[random_colour_permutation(rng) for _ in range(count)] for _ in range(inputs.shape[0])])
        transforms[:, 0] = 0
        perms[:, 0] = np.arange(NUM_COLOURS)
        copies = np.zeros((inputs.shape[0], count, inputs.shape[1]), dtype=inputs.dtype)
        for n, row in enumerate(inputs):
            grid = grid_of(row)
            for k in range(count):
                copies[n, k] = token_lut(perms[n, k])[encode(dihedral(grid, int(transforms[n, k])))].reshape(-1)
        return copies, (transforms, perms)

    def invert(self, predictions: np.ndarray, state: Any) -> np.ndarray:
        """Predicted canvases of the copies (N, count, 900) in the original task's frame:
        each grid cropped, its colours and transform undone, re-encoded at the top-left."""
        transforms, perms = state
        predictions = np.asarray(predictions)
        out = np.zeros_like(predictions)
        for n in range(predictions.shape[0]):
            for k in range(predictions.shape[1]):
                unmapped = token_lut(inverse_permutation(perms[n, k]))[predictions[n, k].astype(np.int64)]
                grid = grid_of(unmapped)
                if grid.size:
                    out[n, k] = encode(inverse_dihedral(grid, int(transforms[n, k]))).reshape(-1)
        return out
