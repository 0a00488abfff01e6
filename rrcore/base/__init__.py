"""Helpers with no knowledge of rr's models or plugins: config value validators
(``validators``), atomic file writes and full-disk errors (``files``), process groups and
collectives (``distributed``), progress bars and lines (``progress``) and the one-line input
errors of command-line tools (``cli_input``).

May import: rrcore.
"""
