"""``torch.compile``, as users compile a model for deployment (a C++ compiler on CPUs, triton on GPUs)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.plugin import NoArgs, Spec, alignment, eager, hookimpl


class Compiled:
    """``torch.compile(model)`` with its default settings, compiled once before it is timed.

    Single layers are timed in eager PyTorch (``times_layers`` false): compiling each layer
    variant of a latency table would take seconds apiece, and a compiled convolution calls the
    same kernel (on CPUs, oneDNN's; inductor compiles the element-wise work around it, which the
    whole forwards that calibrate the table measure)."""

    name, times_layers = "compile", False

    def version(self) -> str:
        return torch.__version__

    def alignment(self, device: torch.device) -> int:
        return alignment(device)

    def available(self, device: torch.device) -> str | None:
        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile is not supported on this Python or platform"
        if device.type == "cuda" and importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton, which does not import here"
        if device.type == "cpu":
            try:
                torch._inductor.cpp_builder.get_cpp_compiler()
            except Exception:
                return "torch.compile on the CPU needs a C++ compiler (g++ or clang++), which is not found"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        compiled = eager(torch.compile(model), example)
        # models of one class share their compiled code: allow more of them than dynamo's default
        # of 8, and fail rather than fall back to eager silently where even that is not enough
        with torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True):
            compiled()
        return compiled


@hookimpl
def prunekit_runtimes() -> list[Spec]:
    return [Spec("compile", Compiled, "torch.compile with its default settings (needs a C++ compiler on CPUs)", NoArgs)]
