"""Evaluation: metrics, plots, and the ``evaluate`` entry point."""
