"""Evaluation outputs beyond numbers: Kaplan-Meier curves of risk groups, ROC curves, confusion matrices.

Plotting functions take arrays and an output path, write a PNG atomically (matplotlib's Agg canvas, no
pyplot global state, so they are safe in worker threads and headless runs) and return the path.
"""
