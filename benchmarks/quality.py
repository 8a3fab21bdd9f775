"""Which criterion keeps the most accuracy? One trained model — by default the demo's U-Net on
synthetic_eyes — pruned to the same MACs with an identical retraining budget by: IPAD (ω = 0.5)
with distillation, IPAD without, weight norm only (ω = 1), random, and Torch-Pruning's global
magnitude pruner (when installed). One table: mIoU, MACs, parameters and CPU latency of each,
measured in this run.

    python benchmarks/quality.py [--config run.yaml] [--remove 74] [--steps 4] [--normalize l2]
                                 [--per-cost none] [--activations-at output] [--seeds 1] [--out runs/quality]

``--config`` takes model, data, losses and distillation from a run config (a real data folder,
another model); the pruning and retraining budget always comes from the options here.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import shutil
import time
from pathlib import Path

import torch
import yaml

import prunekit as pk
from prunekit.cost.latency import measure
from prunekit.pruning.calibration import TAPS
from prunekit.pruning.scoring import NORMALIZATIONS
from prunekit.pruning.selection import COST_MEASURES
from prunekit.run.components import build_model, build_trainer
from prunekit.run.pruner import Pruner
from prunekit.run.weights import load_into, load_weights
from prunekit.training.distributed import resolve_device
from prunekit.training.seeds import step_seed

MARKER = ".prunekit-quality"  # marks an output folder this script may delete and rewrite


def source_config(args: argparse.Namespace) -> dict:
    """The validated ``--config``, or the demo's with 512 training images, as a plain dict."""
    if args.config:
        return pk.config.load(args.config).to_dict()
    cfg = yaml.safe_load(pk.config.demo_text())
    cfg["data"]["args"]["n_train"] = 512
    return pk.config.load(cfg).to_dict()


def base_config(source: dict, args: argparse.Namespace, run_dir: Path) -> dict:
    cfg = copy.deepcopy(source)
    cfg.update(run_dir=str(run_dir), seed=args.seed)
    cfg["train"]["epochs"] = args.train_epochs
    cfg["pruning"].update(
        prune_away_percent=args.remove,
        step={"percent": args.remove / args.steps},
        layer_limit_percent=95,
        block_limit_percent=95,
    )
    cfg["pruning"]["criterion"].update(normalize=args.normalize, per_cost=args.per_cost)
    cfg["pruning"]["activations_at"] = args.activations_at
    cfg["retrain"]["epochs_per_step"] = args.retrain_epochs
    cfg["finetune"]["epochs"] = args.finetune_epochs
    if "hinton" in cfg["distillation"] and args.temperature is not None:
        cfg["distillation"]["hinton"]["args"]["T"] = args.temperature
    return cfg


def variants(cfg: dict, baseline: Path, seed: int) -> dict[str, dict]:
    def variant(criterion: dict, distill: bool) -> dict:
        out = copy.deepcopy(cfg)
        out["model"]["checkpoint"] = str(baseline)
        out["train"]["epochs"], out["seed"] = 0, seed
        ranking = {key: cfg["pruning"]["criterion"][key] for key in ("normalize", "per_cost")}
        out["pruning"]["criterion"] = {**criterion, **ranking}
        if not distill:
            out["distillation"] = {}
        return out

    return {
        "IPAD ω=0.5 + KD": variant({"weights": {"weight_norm": 0.5, "activation_deviation": 0.5}}, True),
        "IPAD ω=0.5, no KD": variant({"weights": {"weight_norm": 0.5, "activation_deviation": 0.5}}, False),
        "weight norm (ω=1)": variant({"weights": {"weight_norm": 1.0}}, False),
        "random": variant({"weights": {"random": 1.0}, "args": {"random": {"seed": seed}}}, False),
    }


def torch_pruning_run(cfg: dict, baseline: Path, steps: int, remove: float, seed: int) -> tuple[torch.nn.Module, dict]:
    """Torch-Pruning's global magnitude pruner with the same retraining: step, retrain, …, fine-tune."""
    import torch_pruning as tp

    config = pk.config.load({**cfg, "seed": seed, "distillation": {}, "train": {"epochs": 0}})
    model = build_model(config.model, pk.manager())
    retrain = config.retrain
    assert retrain != "none", "quality.py always retrains"
    load_into(model, load_weights(baseline), "baseline")
    trainer = build_trainer(config, pk.manager(), resolve_device(config.device), progress=False)
    x = trainer.data.example()
    base_macs = tp.utils.count_ops_and_params(model, x)[0]
    modules = dict(model.named_modules())
    protected = [modules[p] for g in pk.trace(model, x).groups if not g.prunable for p in g.producers]
    pruner = tp.pruner.MagnitudePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        global_pruning=True,
        pruning_ratio=0.95,
        iterative_steps=100,
        ignored_layers=protected,
    )
    for step in range(1, steps + 1):
        target = (1 - remove / 100 * step / steps) * base_macs
        while tp.utils.count_ops_and_params(model, x)[0] > target and pruner.current_step < 100:
            pruner.step()
        trainer.fit(model, "retrain", retrain, retrain.epochs_per_step, seed=step_seed(config.seed, step))
    trainer.fit(model, "finetune", config.finetune, config.finetune.epochs, seed=step_seed(config.seed, 10_000))
    return model, trainer.evaluate(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remove", type=float, default=74.0, help="percent of the MACs to remove")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--retrain-epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=4)
    parser.add_argument("--normalize", default="l2", choices=NORMALIZATIONS)
    parser.add_argument(
        "--per-cost", default="none", choices=("none", *COST_MEASURES), help="rank by importance per unit of this cost"
    )
    parser.add_argument(
        "--activations-at",
        default="output",
        choices=TAPS,
        help="where activation criteria observe a producer's channels",
    )
    parser.add_argument("--config", help="run config giving model, data and losses (default: the demo's, 512 images)")
    parser.add_argument("--temperature", type=float, help="Hinton distillation temperature (default: the config's)")
    parser.add_argument("--baseline", help="trained baseline weights to reuse (default: train one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baseline and the first pruning run")
    parser.add_argument("--seeds", type=int, default=1, help="pruning runs per method, seeds seed, seed+1, …")
    parser.add_argument("--out", default="runs/quality")
    args = parser.parse_args()
    try:
        source = source_config(args)
    except pk.ConfigError as e:
        parser.error(f"--config: {e}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        parser.error(f"--out {out}: the folder holds files this benchmark did not write; choose another")
    shutil.rmtree(out, ignore_errors=True)  # an earlier run of this benchmark
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by benchmarks/quality.py\n")
    started = time.perf_counter()

    setup = {
        **base_config(source, args, out / "baseline"),
        "retrain": "none",
        "pruning": {"max_steps": 1, "step": {"filters": 1}},
    }
    baseline = Path(args.baseline) if args.baseline else out / "baseline" / "baseline.safetensors"
    if args.baseline:
        setup["model"]["checkpoint"], setup["train"]["epochs"] = str(baseline), 0
    teacher = Pruner.from_config(setup, progress=False).prepare()  # trains and saves the baseline, or loads it
    teacher.log.close()
    cfg = base_config(source, args, out)
    results = {"baseline": [(teacher.teacher, teacher.trainer.evaluate(teacher.teacher))]}
    for seed in range(args.seed, args.seed + args.seeds):
        for name, variant in variants(cfg, baseline, seed).items():
            slug = name.replace(" ", "_").replace("=", "").replace(",", "").replace("+", "and")
            variant["run_dir"] = str(out / f"{slug}-seed{seed}")
            result = Pruner.from_config(variant, progress=False).run()
            results.setdefault(name, []).append((result.model, result.summary["metrics"]))
            print(f"{name}, seed {seed}: done ({time.perf_counter() - started:.0f} s)", flush=True)
        if importlib.util.find_spec("torch_pruning"):
            try:
                results.setdefault("Torch-Pruning magnitude", []).append(
                    torch_pruning_run(cfg, baseline, args.steps, args.remove, seed)
                )
            except Exception as e:  # its failure is a result of the benchmark, not an end to it
                results.pop("Torch-Pruning magnitude", None)
                print(f"Torch-Pruning magnitude, seed {seed}: fails with {type(e).__name__}: {str(e).splitlines()[0]}")
        else:
            print("torch-pruning is not installed (pip install 'prunekit[bench]'): its row is missing")
    report(results, teacher.example, args, cfg)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


def report(
    results: dict[str, list[tuple[torch.nn.Module, dict]]], x: torch.Tensor, args: argparse.Namespace, cfg: dict
) -> None:
    """mIoU over the seeds (mean, min–max); cost and latency of the first seed's model."""
    latencies = measure([runs[0][0] for runs in results.values()], x, repeats=20)
    base = pk.count(results["baseline"][0][0], x)
    print(
        f"\n{cfg['model']['name']} {cfg['model'].get('args', {})} on {cfg['data']['name']} "
        f"{cfg['data'].get('args', {})}, {args.remove:.0f} % of MACs removed in {args.steps} steps, "
        f"{args.retrain_epochs} retraining epoch(s) per step, "
        f"{args.finetune_epochs} fine-tuning epochs, per-layer normalisation {args.normalize}, "
        f"importance per cost: {args.per_cost}, activations at: {args.activations_at}, "
        f"{args.seeds} pruning seed(s); latency: batch 1, median of 20, {torch.get_num_threads()} threads\n"
    )
    print(f"{'method':26} {'mIoU':>7} {'min–max':>15} {'MACs %':>7} {'params %':>9} {'latency':>10} {'speed-up':>9}")
    for (name, runs), lat in zip(results.items(), latencies):
        miou = [metrics["miou"] for _, metrics in runs]
        cost = pk.count(runs[0][0], x)
        print(
            f"{name:26} {sum(miou) / len(miou):7.4f} {min(miou):7.4f}–{max(miou):.4f} "
            f"{100 * cost.macs / base.macs:7.1f} {100 * cost.params / base.params:9.1f} "
            f"{lat * 1e3:8.1f}ms {latencies[0] / lat:8.2f}×"
        )


if __name__ == "__main__":
    main()
