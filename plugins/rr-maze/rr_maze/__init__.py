"""rr-maze: the Maze-Hard task for rr (generator, CSV reader, builder, evaluator)."""
