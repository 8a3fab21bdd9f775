"""ONNX export of a pruned model (``pip install 'prunekit[onnx]'``), checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError, ConfigError
from ...onnx_graph import onnx_bytes
from ...run_files import staged, storage
from .atomic_files import read_json


def example_for(run: Path) -> torch.Tensor:
    """An input the run's model takes: the config's ``input_size``, or one batch item's shape."""
    run = Path(run)
    folder = run if (run / "config.yaml").is_file() else run.parent
    if (folder / "summary.json").is_file():
        summary = read_json(folder / "summary.json", "run summary")
        if "input_size" in summary:
            return torch.randn(summary["input_size"])
    raise CheckpointError(f"cannot tell the input size of {str(run)!r}: no summary.json with input_size")


def export_onnx(
    model_or_run: nn.Module | str | Path,
    path: str | Path,
    example_input: torch.Tensor | None = None,
    model: nn.Module | None = None,
    tolerance: float = 1e-4,
    trust_code: bool = False,
) -> float:
    """Write a model to ONNX at ``path``, checked against PyTorch, and return the largest
    difference between onnxruntime's and PyTorch's outputs on ``example_input``.

    ``model_or_run`` is a model object (``example_input`` then required) or a run directory or
    its export (loaded with :func:`prunekit.load`, ``model=`` a fresh instance where the run was
    of a model object, ``trust_code`` as there; the input defaults to the run's input size). Nothing is written when the
    outputs differ by more than ``tolerance`` (relative).
    """
    from .export import load

    if isinstance(model_or_run, nn.Module):
        if example_input is None:
            raise ConfigError("export_onnx: give example_input=, an input the model takes (a batch of one)")
        net, x = model_or_run, example_input
    else:
        net = load(model_or_run, model=model, trust_code=trust_code)
        x = example_input if example_input is not None else example_for(Path(model_or_run))
    return to_onnx(net, x, Path(path), tolerance)


def to_onnx(model: nn.Module, x: torch.Tensor, path: Path, tolerance: float = 1e-4) -> float:
    """Write ``model`` to ``path`` and return the largest difference between onnxruntime's and
    PyTorch's outputs on ``x``; raise if it exceeds ``tolerance`` (relative)."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'prunekit[onnx]'") from None
    x = x.detach().cpu()
    model = model.cpu().eval()
    graph = onnx_bytes(model, x)
    with staged(path) as tmp:  # only a model that passed the check reaches ``path``
        with storage(path, "write"):
            tmp.write_bytes(graph)
        with torch.no_grad():
            expected = model(x).numpy()
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        error = float(np.abs(got - expected).max())
        if error > tolerance * max(1.0, float(np.abs(expected).max())):
            raise CheckpointError(f"the ONNX model disagrees with PyTorch (largest difference {error:.2e})")
    return error
