"""What each ``prunekit`` command does. Bad input raises a ``PrunekitError``; ``main`` turns it
into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..plugin.contract import EVENTS
from ..plugin.manager import manager
from ..run import config as config_mod
from .options import parse_ints, parse_pairs


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config settings the flags give: ``--set`` pairs, and ``--device``."""
    given = parse_pairs(getattr(args, "set", []), "--set", dotted=True)
    if getattr(args, "device", None) is not None:
        given["device"] = args.device
    return given


def cmd_plugins(args: argparse.Namespace) -> int:
    """Every plugin and what it registers; clashes are listed, not fatal."""
    from ..plugin.listing import describe

    plugins = manager()
    rows, clashes = describe(plugins), plugins.clashes()
    if args.json:
        print(json.dumps({"plugins": rows, "clashes": clashes}, indent=2))
        return 0
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else row["source"]
        print(f"{row['name']}  ({dist})")
        for kind, described in row["descriptions"].items():
            if kind == "layer_type" or not any(described.values()):
                print(f"    {kind}: {', '.join(described)}")
                continue
            for name, text in described.items():
                print(f"    {kind} {name}: {text}" if text else f"    {kind} {name}")
        events = [h for h in row["hooks"] if h.removeprefix("prunekit_") in (*EVENTS, "traversal")]
        if events:
            print(f"    hooks: {', '.join(events)}")
    for clash in clashes:
        print(f"clash: {clash}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    import torch

    from ..cost.counting import count
    from ..run.components import GivenObjects, build_model, build_trainer, example_input
    from ..run.config import ModelConfig

    include: Any = args.include.split(",") if args.include else None
    overrides = None
    size = parse_ints(args.input, "--input") if args.input is not None else None
    if args.config:
        cfg = config_mod.load_config(args.config, settings=settings(args))
        plugins, search = cfg.manager(), cfg.plugins.search
        builder = ModelConfig(cfg.model.name, cfg.model.factory, {**cfg.model.args, **parse_pairs(args.arg, "--arg")})
        if size is None:  # the config's input size, or one item of its data
            size = cfg.input_size or list(
                example_input(cfg, GivenObjects(), build_trainer(cfg, plugins, torch.device("cpu")).data).shape
            )
        include = include or cfg.cost.include or None
        overrides = cfg.cost_functions()
    elif args.model:
        by_path = ":" in args.model
        builder = ModelConfig(
            None if by_path else args.model, args.model if by_path else None, parse_pairs(args.arg, "--arg")
        )
        plugins, search = manager(), [str(Path.cwd())]
    else:
        raise ConfigError(
            f"which model? give --model NAME (or pkg.module:function) or --config FILE; registered models: "
            f"{', '.join(manager().names('model'))}"
        )
    name = builder.name or builder.factory
    if size is None:
        size = [1, int(builder.args.get("in_channels", 1)), 640, 400]
    model = build_model(builder, plugins, search)
    example = torch.empty(size, device="meta")  # shapes only: allocated for real only if the model needs it
    report = count(model, example, overrides=overrides, include=include, plugins=plugins)
    if args.json:
        print(json.dumps({"model": name, "input": size, **report.to_dict()}, indent=2))
    else:
        print(f"{name} at input {'×'.join(map(str, size))}\n")
        print(report.table(depth=args.depth))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from ..run.reporting.report import Kept, kept_table

    pruner = _pruner(config_mod.load_config(args.config, settings=settings(args)), args)
    result = pruner.prune(resume=args.resume)
    print()
    print(kept_table([Kept(**k) for k in result.summary["kept"]]))
    print()
    print(result.table())
    print(f"\ncheckpoints: {pruner.run_dir / 'checkpoints'}")
    return pruned_something(result.summary, args)


def cmd_run(args: argparse.Namespace) -> int:
    from .. import distributed

    if args.nproc > 1 and not distributed.launched():
        return launch(args)
    return finish_run(config_mod.load_config(args.config, settings=settings(args)), args)


def _pruner(config: Any, args: argparse.Namespace) -> Any:
    """The run's pruner, its plan said first (unless ``--quiet``)."""
    from .. import distributed
    from ..run.pruner import Pruner
    from ..run.reporting.plan import plan_text

    if not args.quiet and distributed.is_main():
        print(plan_text(config), flush=True)
    return Pruner(config, progress=not args.quiet)


def finish_run(config: Any, args: argparse.Namespace) -> int:
    from .. import distributed

    pruner = _pruner(config, args)
    result = pruner.run(resume=getattr(args, "resume", False))
    code = 0
    if distributed.is_main():
        print()
        print(result.table())
        print(f"\nrun directory: {pruner.run_dir} (export/, report.md, log.jsonl, checkpoints/)")
        code = pruned_something(result.summary, args)
    distributed.shutdown()
    return code


#: the exit code of a run that finished without removing anything (see docs/runs.md)
NOTHING_PRUNED = 3


def pruned_something(summary: dict[str, Any], args: argparse.Namespace) -> int:
    """0, or :data:`NOTHING_PRUNED` with the reason on stderr where the run's ``summary`` says it
    removed nothing (unless ``--allow-unpruned``)."""
    if summary["filters_removed"]:
        return 0
    why = summary.get("stopped") or "no step was kept"
    print(f"prunekit: nothing was pruned: {why}", file=sys.stderr)
    return 0 if getattr(args, "allow_unpruned", False) else NOTHING_PRUNED


def launch(args: argparse.Namespace) -> int:
    """Re-run this command under torchrun with ``--nproc`` processes on this machine."""
    import subprocess

    from ..distributed import torchrun_command
    from ..run.storage.atomic_files import read_json
    from ..run_files import SUMMARY

    run_dir = Path(config_mod.load_config(args.config, settings=settings(args)).run_dir)
    flags = [*(["--resume"] if args.resume else []), *(["--quiet"] if args.quiet else [])]
    flags += [f"--set={item}" for item in args.set] + ([f"--device={args.device}"] if args.device is not None else [])
    flags.append("--allow-unpruned")  # a worker's exit code 3 would be a failure to torchrun: judged here
    code = subprocess.call(torchrun_command(args.nproc, "-m", "prunekit", "run", args.config, *flags))
    if code:
        print(
            f"prunekit: error: a worker process failed (exit code {code}); the last complete checkpoint of the "
            "run is intact and `prunekit run CONFIG --resume` continues from it",
            file=sys.stderr,
        )
        return code
    removed = read_json(run_dir / SUMMARY, "run summary")["filters_removed"]  # rank 0 has said why, if nothing
    return 0 if removed or args.allow_unpruned else NOTHING_PRUNED


def cmd_demo(args: argparse.Namespace) -> int:
    text = config_mod.demo_text()
    if args.config_only:
        print(text, end="")
        return 0
    data = yaml.safe_load(text)
    data["run_dir"] = f"{data['run_dir']}-{time.strftime('%Y%m%d-%H%M%S')}"  # never overwrite an earlier demo
    return finish_run(config_mod.load_config(data, settings=settings(args)), args)


def cmd_export(args: argparse.Namespace) -> int:
    from ..run.storage.export import exported_from_object, load
    from ..run.storage.onnx_export import export_onnx

    built_from = exported_from_object(Path(args.run))
    if built_from is not None:
        raise ConfigError(
            f"{args.run} was exported from a model object ({built_from}), which the CLI cannot build; in Python: "
            f"pk.export_onnx({args.run!r}, 'model.onnx', model=YourNet()) (or pk.load(..., model=YourNet()))"
        )
    if args.onnx:
        error = export_onnx(args.run, args.onnx, trust_code=args.trust_code)
        print(f"wrote {args.onnx}; largest difference from PyTorch's output: {error:.2e}")
    else:
        model = load(args.run, trust_code=args.trust_code)
        print(f"{args.run}: loads fine ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..run.reporting.report import as_a_run_wrote, read_run, summary_table, task_of, write_report

    path = write_report(Path(args.run), plots=True)
    with as_a_run_wrote(Path(args.run)):
        summary = read_run(Path(args.run))[0]
        print(summary_table(summary, task_of(summary)))
    print(f"\nwrote {path} and its plots")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ..run.reporting.reference import reference

    if args.reference:
        print(reference(), end="")
        return 0
    print(
        yaml.safe_dump(config_mod.load_config(args.config, settings=settings(args)).to_dict(), sort_keys=False), end=""
    )
    return 0
