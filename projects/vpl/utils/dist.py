"""Collectives that work whatever device a tensor lives on (docs/method.md §4).

Phase 1 may keep its pixel features on the CPU (``vpl.pixel_device='cpu'``) while the
process group runs NCCL, which reduces CUDA tensors only. Every collective here runs on
the backend's device (:func:`collective_device`) and leaves the result where the tensor
was; without a process group of more than one rank they do nothing.
"""
from typing import List, Tuple

import torch
import torch.distributed as dist


def rank_world() -> Tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """``dist.barrier()`` under a process group of more than one rank."""
    if rank_world()[1] > 1:
        dist.barrier()


def collective_device(backend: str, device: torch.device) -> torch.device:
    """Where a collective on a tensor on ``device`` must run: NCCL reduces CUDA tensors
    only (the current CUDA device), other backends (gloo) take the tensor where it is."""
    if str(backend).lower() == 'nccl' and device.type != 'cuda':
        return torch.device('cuda', torch.cuda.current_device())
    return device


def all_reduce_sum(t: torch.Tensor, op=None) -> torch.Tensor:
    """In-place sum (or ``op``) of ``t`` over the ranks, on the backend's device."""
    if rank_world()[1] == 1:
        return t
    device = collective_device(dist.get_backend(), t.device)
    buf = t if device == t.device else t.to(device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM if op is None else op)
    if buf is not t:
        t.copy_(buf)
    return t


def all_gather(t: torch.Tensor) -> List[torch.Tensor]:
    """``t`` of every rank (equal shapes), on ``t``'s device, on the backend's device."""
    if rank_world()[1] == 1:
        return [t]
    device = collective_device(dist.get_backend(), t.device)
    buf = t.to(device)
    out = [torch.empty_like(buf) for _ in range(rank_world()[1])]
    dist.all_gather(out, buf)
    return [o.to(t.device) for o in out]
