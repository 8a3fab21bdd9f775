"""Runtimes: where pruned models are deployed and timed."""
