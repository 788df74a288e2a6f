"""Multi-process training on PyTorch's own engine (torchrun + DistributedDataParallel).

``torchrun --nproc_per_node=N -m workbench train CONFIG.toml`` sets the usual environment
variables; ``init_from_env`` starts the process group (NCCL on GPUs, gloo on the CPU). Every
helper here is a no-op in a single process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def gpus_for_local_ranks() -> bool:
    """True when this machine has a GPU for each of its processes (torchrun's LOCAL_WORLD_SIZE, 1 without torchrun)."""
    return torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def init_from_env() -> bool:
    """Start the process group when launched by torchrun; return True when distributed.

    NCCL when every local process has its own GPU, gloo (CPU training) otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if gpus_for_local_ranks() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and is_dist():
        if dist.get_backend() != "nccl":
            from workbench.core.registry import ConfigError

            raise ConfigError(f"train.device: {os.environ.get('LOCAL_WORLD_SIZE')} processes on this machine but "
                              f"{torch.cuda.device_count()} GPU(s); launch torchrun with --nproc_per_node="
                              f"{torch.cuda.device_count()} or set train.device = \"cpu\"")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if world_size() <= 1:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate (N, D) rows from every rank in rank order -> (world*N, D), keeping gradients."""
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


def broadcast_object(obj):
    if world_size() <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_flag(flag: bool) -> bool:
    """True on every rank when the flag is set on any rank (so all ranks stop at the same step)."""
    if world_size() <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
