"""torch.distributed, when the run was launched by torchrun: one process per device (nccl on GPUs,
gloo on CPUs). Every helper is a no-op in a single process."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist

from .errors import ConfigError


def launched() -> bool:
    """True when torchrun started this process (it sets WORLD_SIZE and RANK)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init() -> None:
    """Join the process group torchrun described, once."""
    if launched() and not active():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def resolve_device(name: str) -> torch.device:
    """The device a config names: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} was asked for but CUDA is not available; use auto or cpu")
    return device


def device_for(requested: torch.device) -> torch.device:
    """Each process takes its own GPU."""
    if active() and requested.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, in place (returned for convenience). NCCL only reduces GPU tensors,
    so a CPU tensor makes a round trip through this process's GPU."""
    if not active():
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        return tensor.copy_(on_gpu)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's value, on every rank."""
    if not active():
        return [value]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, value)
    return out


def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BN statistics) everywhere: DDP leaves the last batch's update local."""
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def torchrun_command(nproc: int, *program: str) -> list[str]:
    """The command that runs ``program`` (a script and its arguments, or ``-m module …``) under
    torchrun with ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *program]
