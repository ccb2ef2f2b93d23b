"""Collectives on the backend's device (docs/method.md §4): pixel features may live on
the CPU (``vpl.pixel_device='cpu'``) while the process group runs NCCL."""
import pytest
import torch
import torch.distributed as dist

from projects.vpl.cam.prototypes import PixelSet, learn_prototypes
from projects.vpl.utils import dist as vdist


def test_collective_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 3)
    cpu = torch.device('cpu')
    assert vdist.collective_device('nccl', cpu) == torch.device('cuda', 3)
    assert vdist.collective_device('NCCL', torch.device('cuda', 1)) == torch.device('cuda', 1)
    assert vdist.collective_device('gloo', cpu) == cpu


@pytest.fixture
def fake_nccl_group(monkeypatch):
    """A 2-rank NCCL group as the code sees it; records what reaches the collectives."""
    seen = []
    monkeypatch.setattr(dist, 'is_available', lambda: True)
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_rank', lambda *a: 0)
    monkeypatch.setattr(dist, 'get_world_size', lambda *a: 2)
    monkeypatch.setattr(dist, 'get_backend', lambda *a: 'nccl')
    monkeypatch.setattr(dist, 'all_reduce', lambda t, *a, **k: seen.append(t.device))
    return seen


def test_cpu_pixels_are_reduced_on_cuda_under_nccl(fake_nccl_group, monkeypatch):
    """NCCL cannot reduce CPU tensors: learning with CPU-resident pixels must hand the
    collective a CUDA tensor (here, without a GPU, the move itself is what fails)."""
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    pixels = PixelSet.from_targets(torch.nn.functional.normalize(torch.randn(6, 4), dim=1),
                                   torch.zeros(6, dtype=torch.long),
                                   torch.ones(1, 3, dtype=torch.bool),
                                   torch.full((6, 3), 1 / 3))
    moved = []

    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get('device')
        if isinstance(target, torch.device) and target.type == 'cuda':
            moved.append(target)
            return self  # stand-in for the GPU copy
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', to)
    learn_prototypes(pixels, torch.eye(3, 4), iters=1, device=torch.device('cpu'))
    assert fake_nccl_group  # the collectives ran, each on the CUDA copy of its tensor
    assert moved.count(torch.device('cuda', 0)) == len(fake_nccl_group)
