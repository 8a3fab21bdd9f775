"""Loggers: where a run's records go besides its own log."""
