"""Tracing a model's real forward into a channel graph: which channels must be removed together."""
