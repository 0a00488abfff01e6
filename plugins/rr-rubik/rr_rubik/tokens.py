"""The 2x2x2 task's token layout: the scrambled state, then the answer slots.

Each example is 18 tokens: the scrambled state in positions 0-6, one token per
corner position (``CORNER_BASE + 3 * corner + twist``, in the order URF, UFL, ULB,
UBR, DFR, DLF, DRB of :mod:`rr_rubik.cube`), then 11 answer slots that hold ``BLANK``
in the input. The label ignores the state positions (pad, 0) and holds an optimal
solution in the answer slots: move tokens followed by ``END`` up to slot 11 (a
distance-11 state has no ``END``).

====== ===== ================================================
token  id    meaning
====== ===== ================================================
PAD    0     padding; label value that is not scored
BLANK  1     an answer slot in the input
END    2     the solution has ended (scored in the label)
moves  3-11  U, U2, U', R, R2, R', F, F2, F' (half-turn metric)
corner 12-32 ``12 + 3 * corner + twist`` at each of 7 positions
====== ===== ================================================
"""

from __future__ import annotations

import numpy as np

from rr_rubik import cube

PAD, BLANK, END = 0, 1, 2
MOVE_BASE = 3
CORNER_BASE = MOVE_BASE + cube.NUM_MOVES  # 12
VOCAB_SIZE = CORNER_BASE + 3 * cube.NUM_CORNERS  # 33
STATE_LEN = cube.NUM_CORNERS  # 7
ANSWER_LEN = cube.GODS_NUMBER  # 11
SEQ_LEN = STATE_LEN + ANSWER_LEN  # 18


def encode_states(index: np.ndarray) -> np.ndarray:
    """State tokens (N, 7) of state indices."""
    perm, ori = cube.index_to_state(index)
    return CORNER_BASE + 3 * perm + ori


def decode_states(tokens: np.ndarray) -> np.ndarray:
    """State indices of state tokens (N, 7)."""
    values = np.asarray(tokens, dtype=np.int64) - CORNER_BASE
    return cube.state_index(values // 3, values % 3)


def encode_solutions(moves: np.ndarray) -> np.ndarray:
    """Answer tokens (N, 11) of move ids (N, 11) with ``-1`` after the end."""
    moves = np.asarray(moves)
    return np.where(moves >= 0, MOVE_BASE + moves, END)
