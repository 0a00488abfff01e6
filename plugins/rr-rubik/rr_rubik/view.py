"""How ``rr report`` draws the 2x2x2 task: the scrambled cube's faces, the predicted
moves, and the cube those moves leave.

Faces are drawn as the usual net (U on top; L, F, R, B in a row; D below), each face
2x2 stickers seen from outside with U up (D seen from below with F up). A sticker's
colour follows from the corner state: position ``i`` holds corner ``perm[i]``
twisted by ``ori[i]``, so its facelet ``(n + ori[i]) % 3`` shows the colour of that
corner's facelet ``n`` (facelet 0 of a corner is its U or D sticker, then clockwise).
"""

from __future__ import annotations

import numpy as np

from rr_rubik import cube
from rr_rubik.tokens import BLANK, CORNER_BASE, END, MOVE_BASE, STATE_LEN
from rrcore.api import Cell, DatasetMetadata, Panel

FACE_COLOURS = {"U": "#ffffff", "R": "#d62728", "F": "#2ca02c", "D": "#ffd700", "L": "#ff7f0e", "B": "#1f77b4"}
NET_ORIGIN = {"U": (0, 2), "L": (2, 0), "F": (2, 2), "R": (2, 4), "B": (2, 6), "D": (4, 2)}
"""Top-left cell of each 2x2 face in the 6x8 net."""

# The three facelets (face, row, column) of each corner position, facelet 0 on U or D,
# then clockwise; positions URF, UFL, ULB, UBR, DFR, DLF, DRB as rr_rubik.cube, then DBL,
# the corner that never moves.
CORNER_FACELETS = (
    (("U", 1, 1), ("R", 0, 0), ("F", 0, 1)),
    (("U", 1, 0), ("F", 0, 0), ("L", 0, 1)),
    (("U", 0, 0), ("L", 0, 0), ("B", 0, 1)),
    (("U", 0, 1), ("B", 0, 0), ("R", 0, 1)),
    (("D", 0, 1), ("F", 1, 1), ("R", 1, 0)),
    (("D", 0, 0), ("L", 1, 1), ("F", 1, 0)),
    (("D", 1, 1), ("R", 1, 1), ("B", 1, 0)),
    (("D", 1, 0), ("B", 1, 1), ("L", 1, 0)),
)


def sticker_faces(perm: tuple[int, ...], ori: tuple[int, ...]) -> dict[tuple[str, int, int], str]:
    """The face whose colour each sticker shows, for a state of the 7 moving corners."""
    perm, ori = tuple(perm) + (cube.NUM_CORNERS,), tuple(ori) + (0,)
    stickers = {}
    for position, (corner, twist) in enumerate(zip(perm, ori)):
        for n in range(3):
            stickers[CORNER_FACELETS[position][(n + twist) % 3]] = CORNER_FACELETS[corner][n][0]
    return stickers


def net_panel(title: str, state: cube.CubeState) -> Panel:
    """The cube's six faces as a net of coloured stickers."""
    rows: list[list[Cell | None]] = [[None] * 8 for _ in range(6)]
    for (face, r, c), colour_face in sticker_faces(state.perm, state.ori).items():
        top, left = NET_ORIGIN[face]
        rows[top + r][left + c] = Cell("", FACE_COLOURS[colour_face])
    return Panel.of(title, rows)


def decode_state(tokens: np.ndarray) -> cube.CubeState | None:
    values = np.asarray(tokens[:STATE_LEN], dtype=np.int64) - CORNER_BASE
    if values.min() < 0 or values.max() >= 3 * cube.NUM_CORNERS:
        return None
    return cube.CubeState(tuple(int(v) for v in values // 3), tuple(int(v) for v in values % 3))


def move_text(token: int) -> str:
    if MOVE_BASE <= token < MOVE_BASE + cube.NUM_MOVES:
        return cube.MOVE_NAMES[token - MOVE_BASE]
    return {END: "∎", BLANK: ""}.get(token, "?")


class RubikView:
    """:class:`rrcore.contracts.views.PuzzleView` for the 2x2x2 task's 18-token examples."""

    def __init__(self, metadata: DatasetMetadata) -> None:
        """Every rubik data set has the same layout (:mod:`rr_rubik.tokens`): ``metadata`` changes nothing."""

    def draw_input(self, inputs: np.ndarray) -> list[Panel]:
        state = decode_state(inputs)
        return [net_panel("scrambled cube", state)] if state is not None else []

    def draw_answer(self, answer: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> list[Panel]:
        slots = range(STATE_LEN, len(answer))
        panels = [Panel.of("moves (∎ end)", [[Cell(move_text(int(answer[p])), None, p) for p in slots]])]
        state = decode_state(inputs)
        if state is not None:
            moves = []
            for p in slots:
                if not MOVE_BASE <= int(answer[p]) < MOVE_BASE + cube.NUM_MOVES:
                    break
                moves.append(int(answer[p]) - MOVE_BASE)
            after = state.apply_moves(moves)
            solved = after == cube.CubeState.solved()
            panels.append(net_panel("after them: solved" if solved else "after them: not solved", after))
        return panels
