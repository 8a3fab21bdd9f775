"""How fast is pk.count? U-Net at 1×1×640×400 against PyTorch's FlopCounterMode on a real forward
(and thop / ptflops / fvcore when installed), all measured in this one run; then ConvNeXt-T
(LayerNorm), RegNetX-400MF (grouped convolutions) and a GroupNorm FPN at small inputs, where a
real forward is cheap and per-op overhead decides.

    python benchmarks/cost_speed.py [--repeats 5] [--size 640,400]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the networks rebuilt in tests/families.py
from _timing import fmt_seconds, median_time, timed

import prunekit as pk
from tests.families import FPN, ConvNeXt


def flop_counter_macs(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def third_party(model, x) -> dict:
    """Other counters, if installed: name -> function returning MACs."""
    found = {}
    if importlib.util.find_spec("thop"):
        import thop

        found["thop"] = lambda: int(thop.profile(model, inputs=(x,), verbose=False)[0])
    if importlib.util.find_spec("ptflops"):
        from ptflops import get_model_complexity_info

        found["ptflops"] = lambda: int(
            get_model_complexity_info(
                model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False, verbose=False
            )[0]
        )
    if importlib.util.find_spec("fvcore"):
        from fvcore.nn import FlopCountAnalysis

        found["fvcore"] = lambda: int(FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="640,400")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split(","))
    torch.manual_seed(0)
    model = pk.get("model", "unet").eval()
    x = torch.randn(1, 1, h, w)

    cold_pk, report = timed(lambda: pk.count(model, x))
    cold_fc, fc_macs = timed(lambda: flop_counter_macs(model, x))
    methods = {
        "prunekit count (meta)": lambda: pk.count(model, x).macs,
        "FlopCounterMode (real forward)": lambda: flop_counter_macs(model, x),
    }
    methods.update(third_party(model, x))
    results = {name: (median_time(fn, args.repeats), fn()) for name, fn in methods.items()}

    base = results["prunekit count (meta)"][0]
    print(f"U-Net (width 64) at 1×1×{h}×{w}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print(f"{'method':34} {'time':>12} {'× prunekit':>11} {'conv MACs':>16}")
    for name, (seconds, macs) in results.items():
        print(f"{name:34} {fmt_seconds(seconds)} {seconds / base:10.1f}× {macs:16,}")
    print(
        f"\nfirst call in this process (one-time imports included): prunekit {fmt_seconds(cold_pk).strip()}, "
        f"FlopCounterMode {fmt_seconds(cold_fc).strip()}"
    )
    same = report.macs == fc_macs
    print(f"conv MACs identical to FlopCounterMode/2: {same} ({report.macs:,})")
    print(f"speed-up over FlopCounterMode: {results['FlopCounterMode (real forward)'][0] / base:.0f}× (target ≥ 30×)")
    families(args.repeats)


def families(repeats: int) -> None:
    """pk.count against FlopCounterMode on the grouped families at small inputs."""
    torch.manual_seed(0)
    nets = {
        "ConvNeXt-T 1×3×64×64": (ConvNeXt().eval(), torch.randn(1, 3, 64, 64)),
        "RegNetX-400MF 1×3×64×64": (pk.get("model", "regnet").eval(), torch.randn(1, 3, 64, 64)),
        "FPN GroupNorm 1×3×64×64": (FPN().eval(), torch.randn(1, 3, 64, 64)),
    }
    print(f"\n{'model':26} {'prunekit':>12} {'FlopCounterMode':>16} {'ratio':>7}  same MACs")
    for name, (model, x) in nets.items():
        ours = median_time(functools.partial(pk.count, model, x), repeats)
        theirs = median_time(functools.partial(flop_counter_macs, model, x), repeats)
        same = pk.count(model, x).macs == flop_counter_macs(model, x)
        print(f"{name:26} {fmt_seconds(ours)} {fmt_seconds(theirs):>16} {theirs / ours:6.1f}×  {same}")


if __name__ == "__main__":
    main()
