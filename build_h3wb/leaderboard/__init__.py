"""Scoring on the H3WB test splits: the leaderboard's MPJPE metrics, the I2D masking rule and a predictions scorer.

``metrics`` holds one function per official metric (plus an unofficial Procrustes-aligned MPJPE), ``masking`` the
I2D-to-3D input masks (seeded, stored once so every method sees the same inputs), ``scoring`` reading a predictions
file, matching it to a ground-truth file by sample id and writing a results table.
"""
