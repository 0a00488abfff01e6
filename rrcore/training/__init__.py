"""Training: the one builder of a run's parts (``build``: data, model, ACT, loss head,
optimizers, EMA, evaluators) and the :class:`~rrcore.training.run.Run` it returns (``run``),
the loop (``loop``), its one step (``step``) and its evaluation (``evaluation``), optimizers (``optim``, ``adam_atan2``,
``sign_sgd``), compilation (``compiling``), checkpoints (``checkpoint``, ``rank_state``,
``resume``, ``fits``), weights in and out (``weights``), EMA, schedule, clock, run folder
(``rundir``), loggers, signals, the NaN guard and the core's built-in plugins (``builtin``).

May import: rrcore, rrcore.base, rrcore.contracts, rrcore.data, rrcore.model, rrcore.evaluation, rrcore.api.
"""
