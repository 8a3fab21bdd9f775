"""The ``prunekit`` command line. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .cost.counting import count
from .errors import ConfigError, PrunekitError
from .plugin.manager import EVENTS, manager
from .run import config as config_mod


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_ints(text: str, what: str) -> list[int]:
    tokens = re.split(r"[,x×]", text.strip())
    if not all(re.fullmatch(r"\s*[0-9]+\s*", t) and int(t) > 0 for t in tokens):
        raise ConfigError(f"{what}: {text!r} must be positive integers separated by commas, e.g. 1,1,640,400")
    return [int(t) for t in tokens]


def parse_args_kv(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"--arg: {item!r} must look like key=value, the key a name")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--arg: the value of {item!r} is not a YAML value ({str(exc).splitlines()[0]})"
            ) from None
    return out


# -- commands ---------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    """Every plugin and what it registers; clashes are listed, not fatal."""
    from .plugin.listing import describe

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

    from .run.components import build_model
    from .run.config import ModelConfig

    include: Any = args.include.split(",") if args.include else None
    overrides = None
    if args.config:
        cfg = config_mod.load_config(args.config)
        plugins, search = cfg.manager(), cfg.plugins.search
        builder = ModelConfig(cfg.model.name, cfg.model.factory, {**cfg.model.args, **parse_args_kv(args.arg)})
        size = parse_ints(args.input, "--input") if args.input is not None else cfg.input_size
        include = include or cfg.cost.include or None
        overrides = cfg.pricing()
    elif args.model:
        plugins, builder, search = manager(), ModelConfig(args.model, None, parse_args_kv(args.arg)), []
        size = parse_ints(args.input, "--input") if args.input is not None else None
    else:
        raise ConfigError(
            f"which model? give --model NAME or --config FILE; registered models: {', '.join(manager().names('model'))}"
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
    from .run.pruner import Pruner
    from .run.reporting.report import Kept, kept_table, summary_table

    pruner = Pruner.from_config(args.config)
    result = pruner.prune(resume=args.resume)
    print()
    print(kept_table([Kept(**k) for k in result.summary["kept"]]))
    print()
    print(summary_table(result.summary, result.state.task))
    print(f"\ncheckpoints: {pruner.run_dir / 'checkpoints'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import distributed

    if args.nproc > 1 and not distributed.launched():
        return launch(args)
    return finish_run(args.config, args.resume)


def finish_run(source: Any, resume: bool) -> int:
    from . import distributed
    from .run.pruner import Pruner
    from .run.reporting.report import summary_table

    pruner = Pruner.from_config(source)
    result = pruner.run(resume=resume)
    if distributed.is_main():
        print()
        print(summary_table(result.summary, result.state.task))
        print(f"\nrun directory: {pruner.run_dir} (export/, report.md, log.jsonl, checkpoints/)")
    distributed.shutdown()
    return 0


def launch(args: argparse.Namespace) -> int:
    """Re-run this command under torchrun with ``--nproc`` processes on this machine."""
    import subprocess

    from .distributed import torchrun_command

    command = torchrun_command(args.nproc, "-m", "prunekit", "run", args.config, *(["--resume"] if args.resume else []))
    code = subprocess.call(command)
    if code:
        print(
            f"prunekit: error: a worker process failed (exit code {code}); the last complete checkpoint of the "
            "run is intact and `prunekit run CONFIG --resume` continues from it",
            file=sys.stderr,
        )
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    text = config_mod.demo_text()
    if args.config_only:
        print(text, end="")
        return 0
    data = yaml.safe_load(text)
    data["run_dir"] = f"{data['run_dir']}-{time.strftime('%Y%m%d-%H%M%S')}"  # never overwrite an earlier demo
    return finish_run(config_mod.load_config(data), resume=False)


def cmd_export(args: argparse.Namespace) -> int:
    from .run.storage.export import exported_from_object, load
    from .run.storage.onnx_export import export_onnx

    built_from = exported_from_object(Path(args.run))
    if built_from is not None:
        raise ConfigError(
            f"{args.run} was exported from a model object ({built_from}), which the CLI cannot build; in Python: "
            f"pk.export_onnx({args.run!r}, 'model.onnx', model=YourNet()) (or pk.load(..., model=YourNet()))"
        )
    if args.onnx:
        error = export_onnx(args.run, args.onnx)
        print(f"wrote {args.onnx}; largest difference from PyTorch's output: {error:.2e}")
    else:
        model = load(args.run)
        print(f"{args.run}: loads fine ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .run.reporting.report import read_run, summary_table, task_of, write_report

    path = write_report(Path(args.run), plots=True)
    summary = read_run(Path(args.run))[0]
    print(summary_table(summary, task_of(summary)))
    print(f"\nwrote {path} and its plots")
    return 0


# -- wiring -----------------------------------------------------------------------------------
def build_parser() -> Parser:
    parser = Parser(prog="prunekit", description="Structured filter pruning of CNNs under a MACs or parameter budget.")
    common = Parser(add_help=False)
    common.add_argument(
        "--plugin",
        "-p",
        action="append",
        default=[],
        metavar="NAME",
        help="also load this plugin: entry point, module or file (like PRUNEKIT_PLUGINS)",
    )
    common.add_argument(
        "--no-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="do not load this plugin (like PRUNEKIT_DISABLE_PLUGINS)",
    )
    common.add_argument("--verbose", "-v", action="store_true", help="tracebacks of failing plugins and errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add = functools.partial(sub.add_parser, parents=[common])

    p = add("plugins", help="list plugins and what they register")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = add("cost", help="MACs and parameters per layer, block and in total")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="registered model name")
    src.add_argument("--config", help="take model, input size and cost settings from a run config")
    p.add_argument("--input", help="example input size, e.g. 1,1,640,400 (default: 1,C,640,400)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="model builder argument")
    p.add_argument("--include", help="optional cost kinds, comma-separated: norm,activation,pooling,upsample or all")
    p.add_argument("--depth", type=int, help="sum layers to module paths of this depth")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_cost)

    p = add("prune", help="the iterative pruning loop of a run config (with its retraining)")
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.set_defaults(func=cmd_prune)

    p = add("run", help="the whole job: baseline, pruning with retraining, fine-tune, export, report")
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine, launched with torchrun (DDP)")
    p.set_defaults(func=cmd_run)

    p = add("demo", help="run the built-in demo config (a small U-Net on synthetic eyes)")
    p.add_argument("--config-only", action="store_true", help="print the demo config and stop")
    p.set_defaults(func=cmd_demo)

    p = add("export", help="check a run's export, or convert it to ONNX")
    p.add_argument("run", help="run directory or export folder")
    p.add_argument("--onnx", help="write the pruned model as ONNX to this file (needs prunekit[onnx])")
    p.set_defaults(func=cmd_export)

    p = add("report", help="write report.md and its PNG plots for a finished run")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with plugin_flags(args.plugin, args.no_plugin, args.verbose):
        try:
            return args.func(args)
        except PrunekitError as exc:
            print(f"prunekit: error: {exc}", file=sys.stderr)
            if args.verbose:
                print(getattr(exc, "details", "") or "".join(traceback.format_exception(exc)), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("prunekit: interrupted", file=sys.stderr)
            return 130


@contextlib.contextmanager
def plugin_flags(load: list[str], disable: list[str], verbose: bool) -> Iterator[None]:
    """The flags as the environment variables every plugin manager reads (torchrun's worker
    processes inherit them), for the duration of one command."""
    changes = {
        "PRUNEKIT_PLUGINS": load,
        "PRUNEKIT_DISABLE_PLUGINS": disable,
        "PRUNEKIT_VERBOSE": ["1"] if verbose else [],
    }
    saved = {name: os.environ.get(name) for name in changes}
    for name, values in changes.items():
        if values:
            os.environ[name] = ",".join(filter(None, (os.environ.get(name, ""), *values)))
    manager.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        manager.cache_clear()


if __name__ == "__main__":
    sys.exit(main())
