"""Distillation losses from the frozen teacher."""
