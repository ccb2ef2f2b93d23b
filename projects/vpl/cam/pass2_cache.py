"""What VPL's second pass needs from its first, so that CLIP runs once per image.

Phase 1 computes GradCAMs twice per image: with the text prototypes ``Z`` (pass 1: CAMs,
VPL targets, features) and with the learned ``W`` (pass 2, the pseudo-labels). Blocks
``1..L-1`` and every attention map CAA uses do not depend on the prototypes
(docs/method.md §2–§3), so pass 2 needs per image only

* ``x_last``: the input of the last block, ``(1+hw, width)``, from which
  :func:`~.gradcam.gradcam_from_last` runs the last block with gradient;
* ``S``: CAA's symmetrised Sinkhorn matrix before squaring (``hw × hw``, exactly
  symmetric, so only its upper triangle is kept); pass 2 squares it again
  (:func:`~.affinity.square`: one ``hw³`` product, ~1 % of a ViT-B/16 forward).
  Without CAA (``cam.caa_blocks = 0``) an entry is ``x_last`` alone: pass 2 still starts
  from the last block.

Both are kept as computed (``dtype=None``): pass 2 then gives the bits of a full
recomputation. ``dtype='float16'`` halves the size at the cost of CAM differences
(measured in docs/phase1.md); ``S`` is then stored as ``hw·S - 1``, its deviation from the
uniform matrix (Sinkhorn makes its mean exactly ``1/hw``): on near-uniform attention a
float16 ``S`` itself moved refined CAMs by up to 0.8 (min-max normalisation magnifies the
tiny spread), the deviation by up to 0.14.

Where: host memory up to ``memory_bytes``, then a disk folder up to ``disk_bytes`` (one
file per image, named like it, written atomically — so a rerun whose prototypes are
already learned still finds them, as it finds finished PNGs); images beyond both bounds
are recomputed in full by pass 2. Entries are dropped once pass 2 has used them.
"""
import os
from typing import Dict, Optional, Tuple

import torch

from ..utils.io import atomic_torch_save

CACHE_DTYPES = {None: None, 'float16': torch.float16}


def _pair_index(n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(n, n, device=device)
    return rows * n + cols, cols * n + rows


class Pass2Cache:
    """Pass-2 inputs by image name (module docstring).

    Args:
        memory_bytes: host memory for entries.
        disk_dir: folder for entries beyond the memory bound (None: none); it should be
            specific to everything the entries depend on (CLIP, normalisation, scale, CAA
            blocks, dtype): the caller names it.
        disk_bytes: bound of the disk folder.
        dtype: None (exact) or ``'float16'``.
    """

    def __init__(self, memory_bytes: float, disk_dir: Optional[str] = None,
                 disk_bytes: float = 0, dtype: Optional[str] = None) -> None:
        if dtype not in CACHE_DTYPES:
            raise ValueError(f'cache dtype must be one of {list(CACHE_DTYPES)}, got {dtype!r}')
        self.memory_bytes, self.disk_bytes = float(memory_bytes), float(disk_bytes)
        self.disk_dir, self.dtype = disk_dir, CACHE_DTYPES[dtype]
        self._memory: Dict[str, dict] = {}
        self.used = dict(memory=0, disk=0)
        self.stats = dict(stored_memory=0, stored_disk=0, full=0, hits=0, misses=0)
        self._index: Dict[Tuple[int, str], Tuple[torch.Tensor, torch.Tensor]] = {}
        if disk_dir:
            os.makedirs(disk_dir, exist_ok=True)
            self.used['disk'] = sum(e.stat().st_size for e in os.scandir(disk_dir)
                                    if e.name.endswith('.pt'))

    def _path(self, name: str) -> str:
        return os.path.join(self.disk_dir, f'{name}.pt')

    def _pairs(self, n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (n, str(device))
        if key not in self._index:
            self._index[key] = _pair_index(n, device)
        return self._index[key]

    def _pack(self, x_last: torch.Tensor, sym: Optional[torch.Tensor]) -> dict:
        entry = dict(x_dtype=str(x_last.dtype).split('.')[-1])
        if self.dtype is not None:
            x_last = x_last.to(self.dtype)
        entry['x_last'] = x_last.detach().cpu().clone()
        if sym is not None:
            n = sym.shape[-1]
            upper = sym.reshape(-1)[self._pairs(n, sym.device)[0]]
            entry.update(n=n, s_dtype=str(sym.dtype).split('.')[-1])
            if self.dtype is not None:  # n·S - 1: the deviation from uniform, ~1 or less
                upper = (upper * n - 1).to(self.dtype)
            entry['upper'] = upper.cpu().clone()
        return entry

    def _unpack(self, entry: dict, device: torch.device
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x_last = entry['x_last'].to(device, getattr(torch, entry['x_dtype']))
        if 'upper' not in entry:
            return x_last, None
        n = int(entry['n'])
        upper = entry['upper'].to(device, getattr(torch, entry['s_dtype']))
        if self.dtype is not None:
            upper = (upper + 1) / n
        flat, flat_t = self._pairs(n, device)
        sym = torch.empty(n * n, dtype=upper.dtype, device=device)
        sym[flat] = upper
        sym[flat_t] = upper
        return x_last, sym.view(n, n)

    @staticmethod
    def _bytes(entry: dict) -> int:
        return sum(entry[k].numel() * entry[k].element_size()
                   for k in ('x_last', 'upper') if k in entry)

    def put(self, name: str, x_last: torch.Tensor, sym: Optional[torch.Tensor]) -> str:
        """Keep image ``name``'s ``x_last`` ``(1+hw, width)`` and ``S`` ``(hw, hw)`` (None
        without CAA); returns where (``'memory'``, ``'disk'``, or ``''`` when both are
        full)."""
        entry = self._pack(x_last, sym)
        size = self._bytes(entry)
        if self.used['memory'] + size <= self.memory_bytes:
            self._memory[name] = entry
            self.used['memory'] += size
            self.stats['stored_memory'] += 1
            return 'memory'
        if self.disk_dir and self.used['disk'] + size <= self.disk_bytes:
            atomic_torch_save(entry, self._path(name))
            self.used['disk'] += os.path.getsize(self._path(name))
            self.stats['stored_disk'] += 1
            return 'disk'
        self.stats['full'] += 1
        return ''

    def __contains__(self, name: str) -> bool:
        return name in self._memory or bool(
            self.disk_dir and os.path.isfile(self._path(name)))

    def get(self, name: str, device: torch.device
            ) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """``(x_last, S)`` of image ``name`` on ``device`` in their computed dtypes (``S``
        None if it was put without), or None."""
        entry = self._memory.get(name)
        if entry is None and self.disk_dir and os.path.isfile(self._path(name)):
            try:
                entry = torch.load(self._path(name), map_location='cpu', weights_only=True)
            except Exception:  # noqa: BLE001 — a damaged entry is recomputed
                entry = None
        self.stats['hits' if entry is not None else 'misses'] += 1
        return None if entry is None else self._unpack(entry, device)

    def discard(self, name: str) -> None:
        """Drop image ``name``'s entry (memory and disk)."""
        entry = self._memory.pop(name, None)
        if entry is not None:
            self.used['memory'] -= self._bytes(entry)
        if self.disk_dir and os.path.isfile(self._path(name)):
            self.used['disk'] -= os.path.getsize(self._path(name))
            os.unlink(self._path(name))

    def close(self) -> None:
        """Drop every entry in memory; remove the disk folder if it is empty."""
        self._memory.clear()
        self.used['memory'] = 0
        if self.disk_dir and os.path.isdir(self.disk_dir) and not os.listdir(self.disk_dir):
            os.rmdir(self.disk_dir)


def available_memory() -> Optional[int]:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where it does not exist)."""
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
