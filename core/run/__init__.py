"""A run: config, the pruning loop, checkpoints, export and reports."""
