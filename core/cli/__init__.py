"""The ``prunekit`` command line. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import NoReturn

from ..errors import PrunekitError
from ..plugin.manager import manager
from . import commands


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version() -> str:
    from .. import __version__

    return f"prunekit {__version__}"


#: subcommand -> (one-line help, description, examples)
COMMANDS = {
    "run": (
        "the whole job: baseline, pruning with retraining, fine-tune, export, report",
        "Train (or load) the baseline, prune it step by step with retraining and distillation until the "
        "budget is met, fine-tune, export and write the report. The run's plan is printed first.",
        [
            "prunekit run my.yaml",
            "prunekit run my.yaml --set pruning.prune_away_percent=30 --quiet",
            "prunekit run my.yaml --resume",
            "prunekit run my.yaml --nproc 4",
        ],
    ),
    "prune": (
        "only the pruning loop of a run config (with its retraining)",
        "The pruning loop of a run, without the final fine-tuning, export and report: a row per step.",
        ["prunekit prune configs/unet_eyes.yaml", "prunekit prune configs/unet_eyes.yaml --resume"],
    ),
    "demo": (
        "run the built-in demo (a small U-Net on generated eye images)",
        "Train a small U-Net on generated eye images, prune 60 %% of its MACs, fine-tune and report — a few "
        "minutes on 2 CPU cores. --config-only prints its config, a start for your own.",
        ["prunekit demo", "prunekit demo --set pruning.prune_away_percent=40", "prunekit demo --config-only > my.yaml"],
    ),
    "cost": (
        "MACs and parameters per layer, block and in total",
        "Count a model's MACs (FLOPs = 2 × MACs) and parameters on an input size, from shapes alone.",
        [
            "prunekit cost --model unet --input 1,1,640,400 --depth 2",
            "prunekit cost --model mypkg.nets:build",
            "prunekit cost --config my.yaml --json",
        ],
    ),
    "config": (
        "print a config as prunekit resolves it, or the reference of every key",
        "With a config file: the config with every default and the preset filled in, as a run saves it. "
        "With --reference: every section and key, its type, default and meaning (docs/config.md).",
        ["prunekit config my.yaml --set pruning.step.percent=10", "prunekit config --reference"],
    ),
    "export": (
        "check a run's export, or convert it to ONNX",
        "Load a run's export (verifying every file's SHA-256) and, with --onnx, write it as ONNX checked "
        "against PyTorch's output.",
        ["prunekit export runs/demo-20260101-120000", "prunekit export runs/x --onnx model.onnx"],
    ),
    "report": (
        "write report.md and its PNG plots for a finished run",
        "Write the run's Markdown report with its plots (matplotlib: pip install 'prunekit[plot]').",
        ["prunekit report runs/x"],
    ),
    "plugins": (
        "list plugins and what they register",
        "Every plugin, its distribution and version, what it registers and which hooks it implements; clashes.",
        ["prunekit plugins", "prunekit plugins --json"],
    ),
}


def _common() -> Parser:
    """Options every command takes."""
    common = Parser(add_help=False)
    common.add_argument("--plugin", "-p", action="append", default=[], metavar="NAME",
                        help="also load this plugin: entry point, module or file (like PRUNEKIT_PLUGINS)")  # fmt: skip
    common.add_argument("--no-plugin", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (like PRUNEKIT_DISABLE_PLUGINS)")  # fmt: skip
    loud = common.add_mutually_exclusive_group()
    loud.add_argument("--verbose", "-v", action="store_true", help="tracebacks of failing plugins and errors")
    loud.add_argument("--quiet", "-q", action="store_true", help="no plan, progress bars or epoch lines; results only")
    common.add_argument("--device", help="auto, cpu, cuda or cuda:N (the config's device otherwise)")
    return common


def _add(sub: argparse._SubParsersAction, name: str, common: Parser) -> Parser:
    summary, description, examples = COMMANDS[name]
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    return sub.add_parser(
        name, parents=[common], help=summary, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def _with_settings(p: Parser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change one config setting (YAML value); repeat for more")  # fmt: skip


def _allow_unpruned(p: Parser) -> None:
    exit_code = commands.NOTHING_PRUNED
    p.add_argument("--allow-unpruned", action="store_true",
                   help=f"exit 0 when nothing was pruned (default: exit {exit_code}, saying why)")  # fmt: skip


def build_parser() -> Parser:
    parser = Parser(
        prog="prunekit",
        description="Structured filter pruning of CNNs under a MACs, parameter or measured-latency budget, with "
        "retraining and distillation from the unpruned teacher.",
        epilog="examples:\n  prunekit demo\n  prunekit run my.yaml --set pruning.prune_away_percent=30\n"
        "  prunekit COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    common = _common()
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    p = _add(sub, "run", common)
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine, launched with torchrun (DDP)")
    _allow_unpruned(p)
    _with_settings(p)
    p.set_defaults(func=commands.cmd_run)

    p = _add(sub, "prune", common)
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    _with_settings(p)
    _allow_unpruned(p)
    p.set_defaults(func=commands.cmd_prune)

    p = _add(sub, "demo", common)
    p.add_argument("--config-only", action="store_true", help="print the demo config and stop")
    _allow_unpruned(p)
    _with_settings(p)
    p.set_defaults(func=commands.cmd_demo)

    p = _add(sub, "cost", common)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="registered model name, or your builder by import path (pkg.module:function)")
    src.add_argument("--config", help="take model, input size and cost settings from a run config")
    p.add_argument("--input", help="example input size, e.g. 1,1,640,400 (default: the config's, else 1,C,640,400)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="model builder argument")
    p.add_argument("--include", help="optional cost kinds, comma-separated: norm,activation,pooling,upsample or all")
    p.add_argument("--depth", type=int, help="sum layers to module paths of this depth")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _with_settings(p)
    p.set_defaults(func=commands.cmd_cost)

    p = _add(sub, "config", common)
    p.add_argument("config", nargs="?", help="run config (YAML)")
    p.add_argument("--reference", action="store_true", help="every config key, its type, default and meaning")
    _with_settings(p)
    p.set_defaults(func=commands.cmd_config)

    p = _add(sub, "export", common)
    p.add_argument("run", help="run directory or export folder")
    p.add_argument("--onnx", help="write the pruned model as ONNX to this file (needs prunekit[onnx])")
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="import the factory and plugins the export names (an export is data otherwise: nothing is imported)",
    )
    p.set_defaults(func=commands.cmd_export)

    p = _add(sub, "report", common)
    p.add_argument("run", help="run directory")
    p.set_defaults(func=commands.cmd_report)

    p = _add(sub, "plugins", common)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=commands.cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `prunekit`: what it can do
        parser.print_help()
        return 0
    if args.command == "config" and not (args.config or args.reference):
        parser.exit(2, "prunekit config: error: give a config file or --reference\n")
    with plugin_flags(args.plugin, args.no_plugin, args.verbose), terminate_as_interrupt():
        try:
            return int(args.func(args))
        except PrunekitError as exc:
            print(f"prunekit: error: {exc}", file=sys.stderr)
            if args.verbose:
                print(getattr(exc, "details", "") or "".join(traceback.format_exception(exc)), file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            print(
                f"prunekit: {'terminated' if terminated else 'interrupted'}; a run keeps its last complete "
                "checkpoint, and `prunekit run CONFIG --resume` continues from it",
                file=sys.stderr,
            )
            return 143 if terminated else 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's or ``kill``'s stop) ends a command as Ctrl-C does, for one command."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


__all__ = ["build_parser", "main"]
