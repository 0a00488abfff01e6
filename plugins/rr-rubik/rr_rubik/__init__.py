"""rr-rubik: the 2x2x2 Rubik's cube task for rr (cube model, distance table, data, evaluator)."""
