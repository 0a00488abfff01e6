"""Single 2x2x2 scrambles for ``rr solve`` and readable predictions.

A puzzle is a scramble in the half-turn metric, moves separated by spaces, e.g.
``R U2 F' U``: the moves U, U2, U', R, R2, R', F, F2, F' (a typographic ’ is read as
'). Only the U, R and F faces turn, so the DBL corner stays in place as in the data
set (:mod:`rr_rubik.cube`). The model sees the scrambled cube (7 corner tokens) and
writes a solving sequence into the 11 answer slots; the check applies the predicted
moves, up to the first slot that holds no move, to the scrambled cube and asks
whether it is solved.

No test-time augmentations: the symmetries of the cube that keep DBL fixed and map
{U, R, F} turns to {U, R, F} turns (the rotations about the DBL-URF diagonal and their
mirror images) would also have to map the model's solutions, which is not written
yet, so ``augmentations`` is 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rr_rubik import cube
from rr_rubik.tokens import ANSWER_LEN, BLANK, CORNER_BASE, MOVE_BASE, SEQ_LEN, STATE_LEN
from rrcore.api import Check, PuzzleError

CORNER_NAMES = ("URF", "UFL", "ULB", "UBR", "DFR", "DLF", "DRB")


def predicted_moves(tokens: np.ndarray) -> list[int]:
    """Move ids in the answer slots, up to the first slot that holds no move (as the
    ``rubik`` evaluator reads an answer)."""
    moves = []
    for token in np.asarray(tokens)[STATE_LEN : STATE_LEN + ANSWER_LEN]:
        move = int(token) - MOVE_BASE
        if not 0 <= move < cube.NUM_MOVES:
            break
        moves.append(move)
    return moves


def state_of(tokens: np.ndarray) -> cube.CubeState:
    """The cube state in the first 7 tokens."""
    values = np.asarray(tokens)[:STATE_LEN].astype(np.int64) - CORNER_BASE
    return cube.CubeState(tuple(int(v) for v in values // 3), tuple(int(v) for v in values % 3))


class RubikPuzzleTask:
    """The ``rubik`` :class:`rrcore.contracts.protocols.PuzzleTask`: a scramble in, moves out."""

    augmentations = 0

    def __init__(self, data_config: Any, metadata: Any) -> None:
        if metadata.seq_len != SEQ_LEN:
            raise ValueError(f"a rubik data set has {SEQ_LEN} tokens per example, this one {metadata.seq_len}")

    def parse(self, text: str) -> np.ndarray:
        """Input tokens of the cube a scramble leaves; :class:`PuzzleError` names a bad move."""
        words = text.replace("\u2019", "'").split()
        if not words:
            raise PuzzleError('the scramble is empty; give moves such as "R U2 F\'"')
        moves = []
        for number, word in enumerate(words, start=1):
            if word not in cube.MOVE_NAMES:
                hint = "; the 2x2x2 model turns only U, R and F (DBL stays fixed)" if word[:1] in "LDBludrbf" else ""
                raise PuzzleError(f"move {number} {word!r} is not a move{hint}; moves are {' '.join(cube.MOVE_NAMES)}")
            moves.append(cube.MOVE_NAMES.index(word))
        state = cube.CubeState.solved().apply_moves(moves)
        corners = CORNER_BASE + 3 * np.asarray(state.perm) + np.asarray(state.ori)
        return np.concatenate([corners, np.full(ANSWER_LEN, BLANK)]).astype(np.int64)

    def decode(self, tokens: np.ndarray) -> str:
        """The moves in the answer slots (``-`` when none), e.g. ``R U' F2``."""
        moves = predicted_moves(tokens)
        return " ".join(cube.MOVE_NAMES[m] for m in moves) if moves else "-"

    def render(self, tokens: np.ndarray) -> str:
        """The solving sequence and its length; for an input row (no moves yet), its corners."""
        tokens = np.asarray(tokens)
        if (tokens[STATE_LEN:] == BLANK).all():
            state = state_of(tokens)
            return "corners: " + " ".join(
                f"{CORNER_NAMES[p]}{'+' + str(o) if o else ''}" for p, o in zip(state.perm, state.ori)
            )
        moves = predicted_moves(tokens)
        return f"{self.decode(tokens)}  ({len(moves)} move{'s' if len(moves) != 1 else ''})"

    def check(self, inputs: np.ndarray, prediction: np.ndarray) -> Check:
        """The predicted moves applied to the scrambled cube leave it solved."""
        moves = predicted_moves(prediction)
        after = state_of(inputs).apply_moves(moves)
        count = f"{len(moves)} predicted move{'s' if len(moves) != 1 else ''}"
        if after == cube.CubeState.solved():
            return Check(True, f"the cube is solved after the {count}")
        wrong = sum(p != i or o != 0 for i, (p, o) in enumerate(zip(after.perm, after.ori)))
        return Check(False, f"after the {count} {wrong} of {cube.NUM_CORNERS} corners are out of place or twisted")

    def augment(self, inputs: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        raise NotImplementedError("the rubik task has no test-time augmentations (augmentations = 0)")

    def invert(self, predictions: np.ndarray, state: Any) -> np.ndarray:
        raise NotImplementedError("the rubik task has no test-time augmentations (augmentations = 0)")
