"""Layer types: how the torch.nn layers are counted and cut."""
