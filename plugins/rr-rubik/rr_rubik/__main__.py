"""``python -m rr_rubik table``: the ``rr rubik`` commands without the rr CLI."""

from rr_rubik.cli import rubik_group

rubik_group(prog_name="python -m rr_rubik")
