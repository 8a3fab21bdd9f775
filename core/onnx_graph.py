"""A model as an ONNX graph, exported the way prunekit exports pruned models (and the
``onnxruntime`` runtime times them): input ``input`` and output ``output``, any batch size."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn


def onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """``model`` (on the CPU, in the mode it is in) traced on ``example`` as ONNX bytes."""
    with tempfile.TemporaryDirectory(prefix="prunekit-onnx-") as folder, warnings.catch_warnings():
        # TorchScript's exporter (dynamo=False) is the one that needs no onnxscript; it warns that
        # it is the legacy one, about Python values it traces as constants (sizes of this input)
        # and about in-place activations it makes out-of-place — a check against PyTorch is what
        # tells whether an export is right
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="ONNX Preprocess - Removing mutation", category=UserWarning)
        torch.onnx.export(
            model,
            (example.detach().cpu(),),
            str(Path(folder) / "model.onnx"),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
        return (Path(folder) / "model.onnx").read_bytes()
