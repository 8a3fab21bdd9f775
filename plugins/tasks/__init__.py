"""Tasks: what kind of prediction a model makes and how it is scored."""
