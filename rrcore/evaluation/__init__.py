"""Evaluation, one engine: ``pool`` works puzzles through a batch of slots with fixed halting
(the papers' protocol) or adaptive halting, ``split`` evaluates the test split through it and
feeds the evaluators, ``selection`` runs test-time selection over augmented copies and noisy
trajectories, ``tables`` writes ``steps.json`` and ``predictions.jsonl`` and formats what
``rr eval`` prints.

May import: rrcore, rrcore.base, rrcore.contracts, rrcore.data, rrcore.model.
"""
