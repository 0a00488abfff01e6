"""``python -m rr_maze bench``: the ``rr maze`` commands without the rr CLI."""

from rr_maze.cli import maze_group

maze_group(prog_name="python -m rr_maze")
