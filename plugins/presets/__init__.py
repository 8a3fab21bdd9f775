"""Presets: named pruning settings a config builds on."""
