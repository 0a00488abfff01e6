"""The cube model's group structure and the breadth-first distance table."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rr_rubik import cube

SOLVED = cube.CubeState.solved()


def power(sequence: str, times: int) -> cube.CubeState:
    moves = cube.parse_moves(sequence)
    state = SOLVED
    for _ in range(times):
        state = state.apply_moves(moves)
    return state


def order(sequence: str) -> int:
    for times in range(1, 1000):
        if power(sequence, times) == SOLVED:
            return times
    raise AssertionError(f"{sequence} has no order below 1000")


@pytest.mark.parametrize("face", ["U", "R", "F"])
def test_quarter_turns_have_order_four_and_half_turn_is_two_quarters(face):
    assert order(face) == 4
    assert power(face, 2) == SOLVED.apply_moves(cube.parse_moves(f"{face}2"))
    assert power(face, 3) == SOLVED.apply_moves(cube.parse_moves(f"{face}'"))
    assert order(f"{face}2") == 2


def test_every_move_is_undone_by_its_inverse():
    for move in range(cube.NUM_MOVES):
        assert SOLVED.apply_moves([move, cube.INVERSE_MOVE[move]]) == SOLVED
    assert [cube.MOVE_NAMES[cube.INVERSE_MOVE[m]] for m in range(3)] == ["U'", "U2", "U"]


def test_known_orders_of_sequences():
    # Corner parts of well-known 3x3x3 facts: (R U) has order 105 = 15 (corners) x 7
    # (edges); the sexy move R U R' U' has order 6; (R2 U2)^3 only swaps edges.
    assert order("R U") == 15 and order("R F") == 15
    assert order("R U R' U'") == 6
    assert order("R2 U2") == 3


def test_commutation():
    assert power("U U2", 1) == power("U2 U", 1)
    assert power("R U", 1) != power("U R", 1)
    assert power("R F", 1) != power("F R", 1)
    # Half turns of different faces do not commute either on a cube.
    assert power("R2 U2", 1) != power("U2 R2", 1)


def test_twists_always_sum_to_zero_and_moves_twist_corners():
    rng = np.random.default_rng(0)
    state = SOLVED.apply_moves(rng.integers(0, cube.NUM_MOVES, 50).tolist())
    assert sum(state.ori) % 3 == 0
    assert SOLVED.apply_moves(cube.parse_moves("R")).ori != (0,) * 7  # R twists, U does not
    assert SOLVED.apply_moves(cube.parse_moves("U")).ori == (0,) * 7


def test_index_round_trip_and_move_tables_agree_with_the_model():
    rng = np.random.default_rng(1)
    perm_table, ori_table = cube.move_tables()
    indices = rng.integers(0, cube.NUM_STATES, 200)
    for index in indices:
        state = cube.CubeState.from_index(int(index))
        assert state.index == index
        for move in range(cube.NUM_MOVES):
            expected = state.apply(cube.MOVES[move]).index
            assert cube.neighbours(np.array([index]), perm_table, ori_table, move)[0] == expected
    assert SOLVED.index == 0


@pytest.fixture(scope="session")
def rubik_table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rubik-table")
    start = time.perf_counter()
    table = cube.distance_table(folder)
    build_seconds = time.perf_counter() - start
    return folder, table, build_seconds


def test_distance_table_matches_the_known_half_turn_distribution(rubik_table):
    folder, table, build_seconds = rubik_table
    assert table.shape == (3_674_160,)
    assert tuple(np.bincount(table).tolist()) == cube.KNOWN_DISTANCE_COUNTS
    assert build_seconds < 30
    # The second call reads the cached file instead of searching again.
    assert (folder / cube.TABLE_FILE).exists()
    assert np.array_equal(cube.distance_table(folder), table)


def test_optimal_solutions_solve_in_exactly_the_distance(rubik_table):
    _, table, _ = rubik_table
    perm_table, ori_table = cube.move_tables()
    rng = np.random.default_rng(2)
    states = np.concatenate([rng.choice(np.flatnonzero(table == d), 5) for d in range(1, 12)])
    solutions = cube.optimal_solutions(states, table, perm_table, ori_table)
    for index, moves in zip(states, solutions):
        moves = [int(m) for m in moves if m >= 0]
        assert len(moves) == table[index]
        assert cube.CubeState.from_index(int(index)).apply_moves(moves) == SOLVED
    # A scramble of k random moves never needs more than k.
    scramble = cube.parse_moves("R U2 F' R2 U")
    assert table[SOLVED.apply_moves(scramble).index] <= len(scramble)
