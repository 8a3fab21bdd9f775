"""Your retraining as a function the config names: ``retrain: {function: "my_training:retrain"}``.

prunekit calls it once per pruning step with the step (:class:`prunekit.PrunedStep`): the cut
model, its parameters (new tensors: build the optimizer from them), the training batches, the
distillation loss against the unpruned teacher, and ``epochs`` from ``retrain.epochs_per_step``.
What it returns — a number (the task's metric), a dict of metrics, or nothing (prunekit then
validates) — is the step's result, which the guard checks.
"""

import torch
import torch.nn.functional as F


def retrain(step):
    optimizer = torch.optim.AdamW(step.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, step.epochs))
    step.model.train()
    for _ in range(step.epochs):
        for batch in step.train:
            logits = step.model(batch["image"])
            loss = F.cross_entropy(logits, batch["target"]) + step.distillation(batch["image"], logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    # prunekit validates the model on the config's validation data
