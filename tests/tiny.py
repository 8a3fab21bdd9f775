"""A run config small enough for tests: a width-4 U-Net on 16 generated 32×48 images."""
import copy


def tiny_config(run_dir, **overrides) -> dict:
    """The base config; ``section__key=value`` overrides one key of a section."""
    cfg = {
        "seed": 1,
        "run_dir": str(run_dir),
        "model": {"name": "unet", "args": {"width": 4, "n_classes": 4}},
        "data": {"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 16, "n_val": 8}, "batch_size": 8},
        "train": {"epochs": 1},
        "pruning": {"prune_away_percent": 50, "step": {"percent": 25}, "criterion": {"omega": 0.5},
                    "layer_limit_percent": 90, "block_limit_percent": 90, "calibration_batches": 1},
        "retrain": {"epochs_per_step": 1},
        "finetune": {"epochs": 1},
        "distillation": {"hinton": {"weight": 1.0}, "attention": {"weight": 1.0}, "fsp": {"weight": 0.5}},
        "logging": ["jsonl"],
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section] = {**copy.deepcopy(cfg[section]), name: value}
        else:
            cfg[key] = value
    return cfg
