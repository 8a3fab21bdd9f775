"""The ``prunekit`` command line. Bad input ends with one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import yaml

from . import config as config_mod
from .cost import count
from .errors import ConfigError, PrunekitError
from .plugin_manager import configure, manager
from .text import render_table


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_ints(text: str, what: str) -> list[int]:
    tokens = re.split(r"[,x×]", text.strip())
    if not all(t.strip().isdigit() and int(t) > 0 for t in tokens):
        raise ConfigError(f"{what}: {text!r} must be positive integers separated by commas, e.g. 1,1,640,400")
    return [int(t) for t in tokens]


def parse_args_kv(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arg: {item!r} must look like key=value")
        out[key] = yaml.safe_load(value)
    return out


# -- commands ---------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    rows = manager().describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else row["source"]
        print(f"{row['name']}  ({dist})")
        for kind, names in row["registers"].items():
            print(f"    {kind}: {', '.join(names)}")
        events = [h for h in row["hooks"] if h.removeprefix("prunekit_") in ("run_started", "step_done", "epoch_done", "run_finished", "traversal")]
        if events:
            print(f"    hooks: {', '.join(events)}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    import torch

    include: Any = args.include.split(",") if args.include else None
    overrides = None
    if args.config:
        cfg = config_mod.load(args.config)
        configure(cfg.plugins.load, cfg.plugins.disable, cfg.plugins.autoload)
        name, model_args = cfg.model.name, {**cfg.model.args, **parse_args_kv(args.arg)}
        size = parse_ints(args.input, "--input") if args.input else cfg.input_size
        include = include or cfg.cost.include or None
        overrides = cfg.cost.overrides
    else:
        name, model_args = args.model, parse_args_kv(args.arg)
        size = parse_ints(args.input, "--input") if args.input else None
    if size is None:
        size = [1, int(model_args.get("in_channels", 1)), 640, 400]
    model = manager().get("model", name, **model_args)
    report = count(model, torch.zeros(size), overrides=overrides, include=include)
    if args.json:
        print(json.dumps({"model": name, "input": size, **report.to_dict()}, indent=2))
    else:
        print(f"{name} at input {'×'.join(map(str, size))}\n")
        print(report.table(depth=args.depth))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from .pruner import Pruner
    from .report import comparison_table, kept_channels, kept_table

    pruner = Pruner.from_config(args.config)
    result = pruner.prune(resume=args.resume)
    final = count(result.model, pruner.example, overrides=pruner.config.cost.overrides,
                  include=pruner.config.cost.include or None)
    traversal = manager().traversal(pruner.teacher)
    print()
    print(kept_table(kept_channels(pruner.original, final, traversal.blocks if traversal else ())))
    print()
    print(comparison_table(pruner.original, final))
    print(f"\ncheckpoints: {pruner.run_dir / 'checkpoints'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    for name in ("unet", "densenet"):
        report = count(manager().get("model", name), torch.zeros(1, 1, 640, 400))
        print(f"== {name} at 1×1×640×400 ==\n")
        print(report.table(depth=2 if name == "unet" else None))
        print()
    return 0


# -- wiring -----------------------------------------------------------------------------------
def build_parser() -> Parser:
    parser = Parser(prog="prunekit", description="Structured filter pruning of CNNs under a MACs or parameter budget.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("plugins", help="list plugins and what they register")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("cost", help="MACs and parameters per layer, block and in total")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default="unet", help="registered model name (default: unet)")
    src.add_argument("--config", help="take model, input size and cost settings from a run config")
    p.add_argument("--input", help="example input size, e.g. 1,1,640,400 (default: 1,C,640,400)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="model builder argument")
    p.add_argument("--include", help="optional cost kinds, comma-separated: norm,activation,pooling,upsample or all")
    p.add_argument("--depth", type=int, help="sum layers to module paths of this depth")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("prune", help="the iterative pruning loop of a run config (with its retraining)")
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("demo", help="the built-in demonstration")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PrunekitError as exc:
        print(f"prunekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
