"""``python -m rrcore`` is ``rr`` (handy under ``torchrun -m rrcore run ...``)."""

from rrcore.cli.main import main

main()
