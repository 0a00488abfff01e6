"""The ``rr`` command line: the command group and how any command fails (``main``), the
options and exit codes commands share (``common``), and one module per group of commands
(``train``, ``evaluate``, ``inspect``, ``plugins``).

May import: every layer below (rrcore, base, contracts, data, model, evaluation, api,
training, tools, research, testing).
"""
