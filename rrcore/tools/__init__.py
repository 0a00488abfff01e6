"""Tools over a model or a run, one per module: solving, exporting, importing a reference
checkpoint, step-by-step traces with the report and state analysis drawn from them, sweeps,
benchmarks (largest-batch search, profiling), time-to-accuracy curves, plots, the plugin
scaffold. The ``rr`` commands call them.

May import: rrcore, base, contracts, data, model, evaluation, api, training.
"""
