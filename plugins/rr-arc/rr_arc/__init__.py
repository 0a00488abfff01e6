"""rr-arc: ARC-AGI-1, ARC-AGI-2 and ConceptARC data, augmentation and the ARC evaluator."""
