"""ONNX Runtime (``pip install 'prunekit[onnx]'``): the model exported as prunekit exports it, run
by an ``InferenceSession`` on the CPU with its default graph optimisations."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.plugin import NoArgs, Spec, alignment, hookimpl, onnx_bytes


class OnnxRuntime:
    """A CPU ``InferenceSession`` of the exported model, with as many threads as PyTorch uses
    (``torch.set_num_threads``, ``OMP_NUM_THREADS``), one for running nodes side by side, and
    threads that sleep rather than spin between calls."""

    name, times_layers = "onnxruntime", True

    def available(self, device: torch.device) -> str | None:
        missing = [name for name in ("onnx", "onnxruntime") if not _imports(name)]
        if missing:
            return f"{' and '.join(missing)} not installed: pip install 'prunekit[onnx]'"
        if device.type != "cpu":
            return f"onnxruntime is timed on the CPU here, not on {device.type}; set device: cpu"
        return None

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def alignment(self, device: torch.device) -> int:
        # MLAS's blocked convolutions (NCHWc) take channel counts in multiples of 8 (AVX2) or
        # 16 (AVX-512); other counts fall back to slower kernels with reorders around them
        return alignment(device)

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        # idle worker threads spin for a while by default: timed in turns with another model,
        # they would take the cores the other one runs on
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(onnx_bytes(model, example), options, providers=["CPUExecutionProvider"])
        feed = {"input": example.detach().cpu().numpy()}
        return lambda: session.run(None, feed)


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


@hookimpl
def prunekit_runtimes() -> list[Spec]:
    return [Spec("onnxruntime", OnnxRuntime, "ONNX Runtime on the CPU (pip install 'prunekit[onnx]')", NoArgs)]
