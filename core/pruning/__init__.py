"""Pruning: calibration, scoring, budgeted selection, surgery and the plan that records it."""
