"""The report's cube view: sticker colours follow the corner state; moves and their result."""

from __future__ import annotations

import numpy as np
import pytest
from rr_rubik import cube, plugin
from rr_rubik.tokens import ANSWER_LEN, BLANK, END, MOVE_BASE, encode_states
from rr_rubik.view import FACE_COLOURS, NET_ORIGIN, sticker_faces

from rrcore.contracts.registry import load_registry
from rrcore.contracts.views import puzzle_view


def face(stickers: dict, name: str) -> list[str]:
    return [stickers[(name, r, c)] for r in range(2) for c in range(2)]


def test_solved_cube_has_one_colour_per_face_and_any_move_keeps_four_of_each():
    solved = cube.CubeState.solved()
    stickers = sticker_faces(solved.perm, solved.ori)
    assert all(face(stickers, name) == [name] * 4 for name in NET_ORIGIN)
    for move in range(cube.NUM_MOVES):
        state = solved.apply_moves([move])
        colours = list(sticker_faces(state.perm, state.ori).values())
        assert sorted(colours) == sorted(name for name in NET_ORIGIN for _ in range(4))


@pytest.mark.parametrize(
    "move, face_name, row, expected",
    [
        ("U", "F", 0, ["R", "R"]),  # a clockwise U brings R's top row to F
        ("R", "U", None, ["F", "F"]),  # R brings F's right column up to U
        ("F", "R", None, ["U", "U"]),  # F brings U's bottom row to R's left column
    ],
)
def test_quarter_turns_move_the_stickers_a_solver_expects(move, face_name, row, expected):
    state = cube.CubeState.solved().apply_moves(cube.parse_moves(move))
    stickers = sticker_faces(state.perm, state.ori)
    if row is not None:
        assert [stickers[(face_name, row, c)] for c in range(2)] == expected
    else:
        column = 1 if face_name == "U" else 0
        assert [stickers[(face_name, r, column)] for r in range(2)] == expected


def test_rubik_view_shows_moves_and_whether_they_solve_the_cube():
    view = puzzle_view(load_registry(entry_point_group=None, extra_modules=[plugin]), "rubik", None)
    scrambled = cube.CubeState.solved().apply_moves(cube.parse_moves("R U"))
    inputs = np.concatenate([encode_states(np.array([scrambled.index]))[0], [BLANK] * ANSWER_LEN])
    solution = [MOVE_BASE + m for m in cube.parse_moves("U' R'")]
    answer = inputs.copy()
    answer[7:] = solution + [END] * (ANSWER_LEN - 2)
    moves, after = view.draw_answer(answer, inputs, answer)
    assert [cell.text for cell in moves.cells()][:3] == ["U'", "R'", "∎"]
    assert [cell.position for cell in moves.cells()] == list(range(7, 18))
    assert after.title == "after them: solved"
    assert {cell.colour for cell in after.cells()} == set(FACE_COLOURS.values())
    [net] = view.draw_input(inputs)
    assert len(net.cells()) == 24
