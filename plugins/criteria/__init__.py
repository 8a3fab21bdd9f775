"""Criteria: how channels are scored."""
