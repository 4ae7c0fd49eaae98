"""Completion of the keypoints triangulation missed: a small network trained on complete poses, and baselines.

Modules: ``config`` (the settings, torch-free so the configuration schema loads fast), ``model`` (the network),
``train`` (normalisation, masks, training, inference, checkpoints), ``baselines`` (nearest pose, low rank). Import
from those modules; this package itself imports nothing heavy.
"""
