"""Which pruning keeps the most accuracy? Tasks × methods at equal cost, identical retraining,
several pruning seeds, all in one run.

Tasks: the demo's U-Net and RITnet's DenseNet segmenting generated eyes (mIoU), and a small
ResNet classifying generated shapes (top-1); where the zoos import, also torchvision's ResNet-18
on the shapes (``tv_resnet18``) and smp's Unet(resnet18) on the eyes (``smp_unet``). For each,
one baseline is trained, then every method prunes it to the same budget — 74 % of the MACs by
default, or with ``--resource latency`` to the same *measured* speed-up — in the same steps with
the same retraining and fine-tuning: prunekit's defaults (ranked per layer: Taylor for
classification, weight norm and Taylor over a class-balanced loss for segmentation), the former
default (weight norm and Taylor over the training loss), IPAD (ω = 0.5) with and without
distillation, weight norm, Taylor over the training loss or the task's, random, and
Torch-Pruning (when installed: ``pip install torch-pruning==1.6.1``; its Taylor importance takes
the training loss) at the settings its README shows and its users run — local
pruning (one ratio for every layer) with L2 magnitude and with Taylor importance, and global
pruning capped per layer at prunekit's layer limit; with ``--resource latency`` also the
defaults with a MACs budget (MACs steps until the same measured speed-up) and the latency budget
ranked per second saved. Only "IPAD + KD" distils from the teacher. Printed: the task's metric as
mean and range over the seeds, MACs, parameters and the CPU speed-up of the first seed's model.

    python benchmarks/quality.py [--tasks unet,densenet,resnet,tv_resnet18,smp_unet] [--seeds 3]
                                 [--remove 74] [--steps 4] [--retrain-epochs 1] [--finetune-epochs 4]
                                 [--resource macs|latency] [--target-speedup 2] [--methods "random;weight norm"]
                                 [--single-seed "random"] [--quick] [--out runs/quality]

``--quick`` shrinks every task (tiny data, one epoch each, one seed, two steps) so that CI can
run the whole script once; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import prunekit as pk
from prunekit.cost import measure
from prunekit.distributed import resolve_device
from prunekit.run import Pruner, build_model, build_trainer, load_into, load_weights
from prunekit.training.seeds import step_seed

MARKER = ".prunekit-quality"  # marks an output folder this script may delete and rewrite
HERE = Path(__file__).parent


def task_configs() -> dict[str, dict]:
    """The three tasks' run configs (model, data, losses, training), as plain dicts."""
    unet = yaml.safe_load(pk.config.demo_text())
    densenet = yaml.safe_load((HERE / "ritnet_small.yaml").read_text())
    for cfg in (unet, densenet):  # 256 training images keep a three-seed table within an hour on 2 cores
        cfg["data"]["args"]["n_train"] = 256
    resnet = yaml.safe_load((HERE.parent / "examples" / "classification.yaml").read_text())
    return {"unet": unet, "densenet": densenet, "resnet": resnet, **zoo_tasks(unet, resnet)}


def zoo_tasks(unet: dict, resnet: dict) -> dict[str, dict]:
    """A zoo model per task, where its zoo imports: torchvision's ResNet-18 on the shapes at three
    channels (512 training images), smp's Unet on a ResNet-18 encoder on the eyes."""
    tv = copy.deepcopy(resnet)
    tv["model"] = {"name": "torchvision.resnet18", "args": {"num_classes": 4}}
    tv["data"]["args"].update(channels=3, n_train=512, n_val=256)
    smp = copy.deepcopy(unet)
    smp["model"] = {"name": "smp.Unet", "args": {"encoder_name": "resnet18", "classes": 4, "in_channels": 1}}
    return {"tv_resnet18": tv, "smp_unet": smp}


def quick(cfg: dict) -> dict:
    """A task shrunk until CI can afford it."""
    cfg = copy.deepcopy(cfg)
    cfg["data"]["args"].update(n_train=32, n_val=16)
    cfg["data"]["batch_size"] = 16
    return cfg


def shared(cfg: dict, args: argparse.Namespace, run_dir: Path) -> dict:
    """The task with this benchmark's budget and retraining: the same for every method."""
    cfg = copy.deepcopy(cfg)
    cfg.update(run_dir=str(run_dir), seed=args.seed)
    cfg["train"]["epochs"] = args.train_epochs or cfg["train"]["epochs"]
    pruning = {"prune_away_percent": args.remove, "step": {"percent": args.remove / args.steps}}
    if args.resource == "latency":
        pruning = {"resource": "latency", "target_speedup": args.target_speedup, "step": {"percent": 50 / args.steps}}
    # the guard off: every method is stepped to the same budget, none rescued by a rollback; the
    # speed-up column is this script's own measurement, so the runs' reports measure in eager alone
    cfg["pruning"] = {**pruning, "calibration_batches": 4, "max_steps": 4 * args.steps, "max_drop": None,
                      "class_floor": None, "compare_runtimes": []}  # fmt: skip
    cfg["retrain"] = {**cfg.get("retrain", {}), "epochs_per_step": args.retrain_epochs}
    cfg["finetune"] = {**cfg.get("finetune", {}), "epochs": args.finetune_epochs}
    cfg.setdefault("distillation", {})
    return cfg


#: method -> (pruning settings over the shared ones, distil from the teacher). "prunekit defaults"
#: is whatever the default preset and the task hold when the benchmark runs; Taylor differentiates
#: the training loss or the task's calibration loss (segmentation: class-balanced cross-entropy).
METHODS: dict[str, tuple[dict, bool]] = {
    "prunekit defaults": ({}, False),
    "prunekit defaults, channels not aligned": ({"align": "none"}, False),
    "IPAD ω=0.5 + KD": ({"preset": "ipad"}, True),
    "IPAD ω=0.5, no KD": ({"preset": "ipad"}, False),
    "weight norm + Taylor, training loss": (
        {"criterion": {"weights": {"weight_norm": 0.5, "taylor": 0.5}}, "calibration_loss": "training"},
        False,
    ),
    "weight norm": ({"criterion": {"weights": {"weight_norm": 1.0}}}, False),
    "Taylor, training loss": ({"criterion": {"weights": {"taylor": 1.0}}, "calibration_loss": "training"}, False),
    "Taylor, task's loss": ({"criterion": {"weights": {"taylor": 1.0}}, "calibration_loss": "task"}, False),
    "random": ({"criterion": {"weights": {"random": 1.0}}}, False),
}


def variant(cfg: dict, baseline: Path, seed: int, settings: dict, distill: bool, run_dir: Path) -> dict:
    out = copy.deepcopy(cfg)
    out.update(seed=seed, run_dir=str(run_dir))
    out["model"]["checkpoint"] = str(baseline)
    out["train"]["epochs"] = 0
    settings = copy.deepcopy(settings)
    if settings.get("preset") == "ipad":  # the paper's criterion, at this benchmark's budget
        settings["prune_away_percent"] = out["pruning"].get("prune_away_percent", 74)
    if "random" in settings.get("criterion", {}).get("weights", {}):
        settings["criterion"]["args"] = {"random": {"seed": seed}}
    out["pruning"] = {**out["pruning"], **settings}
    if not distill:
        out["distillation"] = {}
    return out


#: Torch-Pruning as its README shows it and its users run it (1.6): the group importances at their
#: defaults (L2 magnitude, or first-order Taylor), local pruning — one ratio for every layer — or
#: global ranking capped per layer at prunekit's default layer limit (75 %); output layers ignored.
TP_METHODS: dict[str, tuple[str, bool]] = {
    "Torch-Pruning local, L2 magnitude": ("GroupMagnitudeImportance", False),
    "Torch-Pruning local, Taylor": ("GroupTaylorImportance", False),
    "Torch-Pruning global, L2, max ratio 0.75": ("GroupMagnitudeImportance", True),
}


def torch_pruning_run(
    cfg: dict, baseline: Path, args: argparse.Namespace, seed: int, method: str, speedup: float | None
) -> tuple[nn.Module, dict]:
    """Torch-Pruning with the same retraining: step, retrain, …, fine-tune. Each step prunes (in
    Torch-Pruning's own small increments) until its share of the MACs is gone — or, with a
    latency budget, until the measured speed-up reaches its share of ``speedup``."""
    import torch_pruning as tp

    importance_name, global_pruning = TP_METHODS[method]
    config = pk.load_config({**cfg, "seed": seed, "distillation": {}, "train": {"epochs": 0}})
    model = build_model(config.model, pk.manager())
    load_into(model, load_weights(baseline), "baseline")
    reference = copy.deepcopy(model).eval()
    trainer = build_trainer(config, pk.manager(), resolve_device(config.device), progress=False)
    x = trainer.data.example()
    base_macs = tp.utils.count_ops_and_params(model, x)[0]
    modules = dict(model.named_modules())
    protected = [modules[p] for g in pk.trace(model, x).groups if not g.prunable for p in g.producers]
    taylor = importance_name == "GroupTaylorImportance"
    pruner = tp.pruner.MetaPruner(
        model, x, importance=getattr(tp.importance, importance_name)(), global_pruning=global_pruning,
        pruning_ratio=0.95, max_pruning_ratio=0.75 if global_pruning else 1.0, iterative_steps=100,
        ignored_layers=protected,
    )  # fmt: skip

    def short_of(step: int) -> bool:
        if speedup is None:
            return tp.utils.count_ops_and_params(model, x)[0] > (1 - args.remove / 100 * step / args.steps) * base_macs
        base_s, now = measure([reference, model], x, 10)
        return base_s / now < speedup ** (step / args.steps)

    for step in range(1, args.steps + 1):
        while short_of(step) and pruner.current_step < 100:
            if taylor:
                gradients(model, trainer, config.pruning.calibration_batches, step_seed(seed, step))
            pruner.step()
        retrain = config.retrain
        if retrain != "none":
            trainer.fit(model, "retrain", retrain, retrain.epochs_per_step, seed=step_seed(seed, step))
    trainer.fit(model, "finetune", config.finetune, config.finetune.epochs, seed=step_seed(seed, 10_000))
    return model, trainer.evaluate(model)


def gradients(model: nn.Module, trainer: Any, batches: int, seed: int) -> None:
    """Accumulate the task loss's gradients over a few batches, for Taylor importance."""
    model.zero_grad()
    model.eval()
    for batch in trainer.data.calibration_batches(batches, seed):
        trainer.objective.task_loss(model(batch["image"]), batch).backward()


def run_task(name: str, source: dict, args: argparse.Namespace, out: Path) -> None:
    started = time.perf_counter()
    cfg = shared(quick(source) if args.quick else source, args, out / name)
    setup = {**copy.deepcopy(cfg), "run_dir": str(out / name / "baseline"), "retrain": "none"}
    setup["pruning"] = {"max_steps": 1, "step": {"filters": 1}}
    teacher = Pruner.from_config(setup, progress=False).prepare()  # trains and saves the baseline
    teacher.log.close()
    baseline = out / name / "baseline" / "baseline.safetensors"
    metric, label = teacher.task.best_metric, teacher.task.best_label
    results: dict[str, list[tuple[nn.Module, dict]]] = {
        "baseline": [(teacher.teacher, teacher.trainer.evaluate(teacher.teacher))]
    }
    methods = dict(list(METHODS.items())[:2]) if args.quick else dict(METHODS)
    if args.resource == "latency":  # MACs steps until the same measured speed-up
        by_macs = {"resource": "macs", "step": {"percent": args.remove / args.steps}}
        methods["prunekit defaults with a MACs budget"] = (by_macs, False)
        methods["latency budget, ranked per latency saved"] = ({"criterion": {"per_cost": "latency"}}, False)
    wanted = set(args.methods.split(";")) if args.methods else None
    single = set(args.single_seed.split(";")) if args.single_seed else set()

    def runs(method: str, seed: int) -> bool:
        return (wanted is None or method in wanted) and (method not in single or seed == args.seed)

    for seed in range(args.seed, args.seed + args.seeds):
        for method, (settings, distill) in methods.items():
            if not runs(method, seed):
                continue
            run_dir = out / name / f"{slug(method)}-seed{seed}"
            result = Pruner.from_config(variant(cfg, baseline, seed, settings, distill, run_dir), progress=False).run()
            results.setdefault(method, []).append((result.model, result.summary["metrics"]))
            value = result.summary["metrics"][metric]
            print(f"{name}: {method}, seed {seed}: {value:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
        for method in TP_METHODS if importlib.util.find_spec("torch_pruning") and not args.quick else ():
            if not runs(method, seed):
                continue
            try:
                speedup = args.target_speedup if args.resource == "latency" else None
                results.setdefault(method, []).append(torch_pruning_run(cfg, baseline, args, seed, method, speedup))
                value = results[method][-1][1][metric]
                print(f"{name}: {method}, seed {seed}: {value:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
            except Exception as exc:  # its failure is a result of the benchmark, not an end to it
                results.pop(method, None)
                print(f"{name}: {method}, seed {seed}: fails with {type(exc).__name__}: {str(exc).splitlines()[0]}")
    table(name, cfg, results, teacher.example, metric, label, args)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def table(
    name: str,
    cfg: dict,
    results: dict[str, list[tuple[nn.Module, dict]]],
    x: torch.Tensor,
    metric: str,
    label: str,
    args: argparse.Namespace,
) -> None:
    """The task's table: metric over the seeds (mean, min–max); cost and speed-up of the first seed's model."""
    latencies = measure([runs[0][0] for runs in results.values()], x, repeats=20)
    base = pk.count(results["baseline"][0][0], x)
    budget = (
        f"to {args.target_speedup:.1f}× measured speed-up"
        if args.resource == "latency"
        else f"{args.remove:.0f} % of MACs removed"
    )
    print(
        f"\n### {name}: {cfg['model']['name']} {cfg['model'].get('args', {})} on {cfg['data']['name']} "
        f"{cfg['data'].get('args', {})}\n\n{budget} in {args.steps} steps, {args.retrain_epochs} retraining "
        f"epoch(s) per step, {args.finetune_epochs} fine-tuning epochs, {len(results['baseline'])} baseline, "
        f"pruning seeds from {args.seed}; speed-up: CPU, batch 1, median of 20, {torch.get_num_threads()} threads\n"
    )
    print(f"| method | {label} mean | min–max | seeds | MACs % | params % | speed-up |\n|---|---|---|---|---|---|---|")
    for (method, runs), seconds in zip(results.items(), latencies):
        values = [m[metric] for _, m in runs]
        cost = pk.count(runs[0][0], x)
        print(
            f"| {method} | {statistics.mean(values):.4f} | {min(values):.4f}–{max(values):.4f} | {len(values)} | "
            f"{100 * cost.macs / base.macs:.1f} | {100 * cost.params / base.params:.1f} | "
            f"{latencies[0] / seconds:.2f}× |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="unet,densenet,resnet")
    parser.add_argument("--remove", type=float, default=74.0, help="percent of the MACs to remove")
    parser.add_argument("--resource", choices=("macs", "latency"), default="macs")
    parser.add_argument("--target-speedup", type=float, default=2.0, help="with --resource latency")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--train-epochs", type=int, help="baseline epochs (default: the task config's)")
    parser.add_argument("--retrain-epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the baseline and the first pruning run")
    parser.add_argument("--seeds", type=int, default=3, help="pruning runs per method, seeds seed, seed+1, …")
    parser.add_argument("--single-seed", help='methods run with the first seed only, separated by ";"')
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, 1 seed, 2 steps: for CI")
    parser.add_argument("--methods", help='method names to run, separated by ";" (default: all)')
    parser.add_argument("--out", default="runs/quality")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.train_epochs, args.retrain_epochs, args.finetune_epochs = 1, 2, 1, 1, 1
    tasks = task_configs()
    unknown = [t for t in args.tasks.split(",") if t not in tasks]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; choose from {', '.join(tasks)}")
    missing = pk.Manager().unavailable()  # the zoos that do not import here, and why
    for name in args.tasks.split(","):
        model = tasks[name]["model"]["name"]
        why = next((w for prefix, w in missing.items() if f"model {model}".startswith(prefix)), None)
        if why:
            parser.error(f"--tasks {name}: {why}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        parser.error(f"--out {out}: the folder holds files this benchmark did not write; choose another")
    shutil.rmtree(out, ignore_errors=True)  # an earlier run of this benchmark
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by benchmarks/quality.py\n")
    started = time.perf_counter()
    for name in args.tasks.split(","):
        run_task(name, tasks[name], args, out)
    print(f"\n({time.perf_counter() - started:.0f} s in all; python benchmarks/quality.py {' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
