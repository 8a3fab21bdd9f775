"""Training: the trainer with distillation, the data it reads, seeds, and torch.distributed."""
