"""Cost: MACs and parameters counted from the layer types, predicted for any removal, and measured latency."""
