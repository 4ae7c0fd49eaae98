"""Hands and face after completion: per-subject part shape models, re-triangulation, the optional 2D corrector."""
