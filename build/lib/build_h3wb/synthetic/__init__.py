"""Synthetic Human3.6M-like whole-body capture: subject body models and closed-form motion with ground truth."""
