"""The 2x2x2 cube as corner permutation + orientation, its moves and a distance table.

Corners are numbered URF=0, UFL=1, ULB=2, UBR=3, DFR=4, DLF=5, DRB=6; the eighth
corner, DBL, never moves: turning only the U, R and F faces fixes it, so every cube
state is reached with DBL in place and the whole cube's rotations need no quotient.
A state is ``(perm, ori)`` in the "replaced-by" convention: ``perm[i]`` is the
corner sitting at position ``i`` and ``ori[i]`` its twist (0, 1 or 2, clockwise);
the twists sum to 0 mod 3, so the last is implied by the first six.

The state's index is ``perm_rank * 729 + ori_code`` with ``perm_rank`` the Lehmer
rank of ``perm`` among 7! = 5040 permutations and ``ori_code`` the first six twists
in base 3 (3^6 = 729), 3,674,160 states in all; the solved cube is index 0.

Moves are the half-turn metric's nine: U, U2, U', R, R2, R', F, F2, F'. A move
acts on the permutation and the orientation coordinates separately, so the move
tables are small (5040 x 9 and 729 x 9) and the breadth-first search over all
states is a handful of vectorised gathers per depth.
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
import time
from itertools import permutations
from pathlib import Path

import attrs
import numpy as np

NUM_CORNERS = 7
NUM_PERMS = math.factorial(NUM_CORNERS)  # 5040
NUM_ORIS = 3 ** (NUM_CORNERS - 1)  # 729
NUM_STATES = NUM_PERMS * NUM_ORIS  # 3,674,160
MOVE_NAMES = ("U", "U2", "U'", "R", "R2", "R'", "F", "F2", "F'")
NUM_MOVES = len(MOVE_NAMES)
GODS_NUMBER = 11  # the largest distance in the half-turn metric
KNOWN_DISTANCE_COUNTS = (1, 9, 54, 321, 1847, 9992, 50136, 227536, 870072, 1887748, 623800, 2644)
"""States at each half-turn distance 0..11 (the published 2x2x2 count)."""

# Quarter turns clockwise, as (perm, ori) in the replaced-by convention, for corners
# URF, UFL, ULB, UBR, DFR, DLF, DRB (facts of the cube; DBL is left out as it stays).
_QUARTER_TURNS = {
    "U": ((3, 0, 1, 2, 4, 5, 6), (0, 0, 0, 0, 0, 0, 0)),
    "R": ((4, 1, 2, 0, 6, 5, 3), (2, 0, 0, 1, 1, 0, 2)),
    "F": ((1, 5, 2, 3, 0, 4, 6), (1, 2, 0, 0, 2, 1, 0)),
}


@attrs.frozen
class CubeState:
    """One cube state: ``perm[i]`` the corner at position ``i``, ``ori[i]`` its twist."""

    perm: tuple[int, ...]
    ori: tuple[int, ...]

    @classmethod
    def solved(cls) -> CubeState:
        return cls(tuple(range(NUM_CORNERS)), (0,) * NUM_CORNERS)

    def apply(self, move: CubeState) -> CubeState:
        """This state followed by ``move`` (the group product ``self * move``)."""
        perm = tuple(self.perm[move.perm[i]] for i in range(NUM_CORNERS))
        ori = tuple((self.ori[move.perm[i]] + move.ori[i]) % 3 for i in range(NUM_CORNERS))
        return CubeState(perm, ori)

    def apply_moves(self, moves: list[int] | tuple[int, ...]) -> CubeState:
        """Apply move ids (indices into :data:`MOVE_NAMES`) in order."""
        state = self
        for move in moves:
            state = state.apply(MOVES[move])
        return state

    @property
    def index(self) -> int:
        return int(state_index(np.asarray([self.perm]), np.asarray([self.ori]))[0])

    @classmethod
    def from_index(cls, index: int) -> CubeState:
        perm, ori = index_to_state(np.asarray([index]))
        return cls(tuple(int(v) for v in perm[0]), tuple(int(v) for v in ori[0]))


def _build_moves() -> tuple[CubeState, ...]:
    moves = []
    for face in "URF":
        quarter = CubeState(*_QUARTER_TURNS[face])
        half = quarter.apply(quarter)
        moves += [quarter, half, half.apply(quarter)]
    return tuple(moves)


MOVES = _build_moves()
"""The nine moves as states, in the order of :data:`MOVE_NAMES`."""
INVERSE_MOVE = tuple(MOVE_NAMES.index(name[0] + {"": "'", "2": "2", "'": ""}[name[1:]]) for name in MOVE_NAMES)
"""``INVERSE_MOVE[m]`` undoes move ``m`` (U <-> U', U2 <-> U2...)."""


def parse_moves(text: str) -> list[int]:
    """Move ids of a space-separated sequence such as ``"R U R' U'"``."""
    return [MOVE_NAMES.index(token) for token in text.split()]


# -- coordinates ------------------------------------------------------------------------

_FACTORIALS = np.array([math.factorial(NUM_CORNERS - 1 - i) for i in range(NUM_CORNERS)], dtype=np.int64)
_ORI_WEIGHTS = 3 ** np.arange(NUM_CORNERS - 2, -1, -1, dtype=np.int64)  # first twist most significant


def perm_rank(perm: np.ndarray) -> np.ndarray:
    """Lehmer rank (lexicographic index) of each row of ``perm`` (N, 7)."""
    perm = np.asarray(perm, dtype=np.int64)
    smaller_after = (perm[:, None, :] < perm[:, :, None]) & np.triu(np.ones((NUM_CORNERS,) * 2, bool), 1)
    return smaller_after.sum(-1) @ _FACTORIALS


def ori_code(ori: np.ndarray) -> np.ndarray:
    """Base-3 code of the first six twists of each row of ``ori`` (N, 7)."""
    return np.asarray(ori, dtype=np.int64)[:, : NUM_CORNERS - 1] @ _ORI_WEIGHTS


def state_index(perm: np.ndarray, ori: np.ndarray) -> np.ndarray:
    """Index of each state, ``perm_rank * 729 + ori_code``."""
    return perm_rank(perm) * NUM_ORIS + ori_code(ori)


_ALL_PERMS = np.array(list(permutations(range(NUM_CORNERS))), dtype=np.int64)  # row r has rank r


def _all_oris() -> np.ndarray:
    digits = (np.arange(NUM_ORIS)[:, None] // _ORI_WEIGHTS[None, :]) % 3
    return np.concatenate([digits, (-digits.sum(1, keepdims=True)) % 3], axis=1)


_ALL_ORIS = _all_oris()  # row c has code c


def index_to_state(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(perm, ori)`` arrays (N, 7) of state indices."""
    index = np.asarray(index, dtype=np.int64)
    return _ALL_PERMS[index // NUM_ORIS], _ALL_ORIS[index % NUM_ORIS]


def move_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(perm_table (5040, 9), ori_table (729, 9))``: the coordinate after each move."""
    perm_table = np.empty((NUM_PERMS, NUM_MOVES), dtype=np.int64)
    ori_table = np.empty((NUM_ORIS, NUM_MOVES), dtype=np.int64)
    for m, move in enumerate(MOVES):
        move_perm, move_ori = np.array(move.perm), np.array(move.ori)
        perm_table[:, m] = perm_rank(_ALL_PERMS[:, move_perm])
        ori_table[:, m] = ori_code((_ALL_ORIS[:, move_perm] + move_ori) % 3)
    return perm_table, ori_table


def neighbours(index: np.ndarray, perm_table: np.ndarray, ori_table: np.ndarray, move: int) -> np.ndarray:
    """The state index after ``move`` for each state in ``index``."""
    return perm_table[index // NUM_ORIS, move] * NUM_ORIS + ori_table[index % NUM_ORIS, move]


# -- distance table ---------------------------------------------------------------------

UNREACHED = 255


def build_distance_table() -> np.ndarray:
    """Half-turn distance to solved of every state (uint8, 3,674,160), by breadth-first search.

    Each depth expands the whole frontier at once: nine gathers through the move
    tables, then the not-yet-reached neighbours get depth + 1.
    """
    perm_table, ori_table = move_tables()
    distance = np.full(NUM_STATES, UNREACHED, dtype=np.uint8)
    distance[0] = 0
    frontier = np.zeros(1, dtype=np.int64)
    depth = 0
    while frontier.size:
        perm_part, ori_part = frontier // NUM_ORIS, frontier % NUM_ORIS
        for move in range(NUM_MOVES):
            reached = perm_table[perm_part, move] * NUM_ORIS + ori_table[ori_part, move]
            distance[reached[distance[reached] == UNREACHED]] = depth + 1
        depth += 1
        frontier = np.flatnonzero(distance == depth)
    return distance


TABLE_FILE = "rubik2x2-distances-v1.npy"


def distance_table(cache_dir: Path, verbose: bool = False) -> np.ndarray:
    """The distance table, loaded from ``cache_dir`` or built once and saved there atomically."""
    path = Path(cache_dir) / TABLE_FILE
    if path.exists():
        table = np.load(path)
        if table.shape == (NUM_STATES,) and table.dtype == np.uint8:
            return table
    start = time.perf_counter()
    table = build_distance_table()
    if verbose:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"built the 2x2x2 distance table in {time.perf_counter() - start:.1f} s "
            f"(process peak RSS {peak_mib:.0f} MiB)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".npy", delete=False) as file:
        np.save(file, table)
    os.replace(file.name, path)
    return table


def optimal_solution(index: int, table: np.ndarray, perm_table: np.ndarray, ori_table: np.ndarray) -> list[int]:
    """Move ids of one optimal solution of state ``index`` (the first move, in
    :data:`MOVE_NAMES` order, that lowers the distance at each step)."""
    solutions = optimal_solutions(np.asarray([index]), table, perm_table, ori_table)
    return [int(m) for m in solutions[0] if m >= 0]


def optimal_solutions(
    index: np.ndarray, table: np.ndarray, perm_table: np.ndarray, ori_table: np.ndarray
) -> np.ndarray:
    """Optimal move ids for many states at once: (N, 11), -1 after the end."""
    current = np.asarray(index, dtype=np.int64).copy()
    solutions = np.full((current.size, GODS_NUMBER), -1, dtype=np.int64)
    for step in range(GODS_NUMBER):
        remaining = table[current].astype(np.int64)
        chosen = np.full(current.size, -1, dtype=np.int64)
        for move in range(NUM_MOVES - 1, -1, -1):  # reverse so the first good move wins
            after = neighbours(current, perm_table, ori_table, move)
            chosen = np.where((remaining > 0) & (table[after] == remaining - 1), move, chosen)
        solutions[:, step] = chosen
        current = _step(current, chosen, perm_table, ori_table)
    return solutions


def _step(current: np.ndarray, moves: np.ndarray, perm_table: np.ndarray, ori_table: np.ndarray) -> np.ndarray:
    """Each state of ``current`` after its own move (``-1`` keeps it)."""
    safe = np.maximum(moves, 0)
    after = perm_table[current // NUM_ORIS, safe] * NUM_ORIS + ori_table[current % NUM_ORIS, safe]
    return np.where(moves >= 0, after, current)
