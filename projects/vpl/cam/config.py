"""Settings and result of a phase-1 run (docs/method.md §2–§4); defaults are the paper's /
CLIP-ES's."""
from dataclasses import dataclass, field
from typing import Optional

import torch

AMP_DTYPES = {None: None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
#: :class:`CAMConfig` fields that only CAA reads (no effect with ``caa_blocks = 0``).
CAA_SETTINGS = ('phi', 'sinkhorn_rounds', 'affinity_power')


@dataclass
class CAMConfig:
    """GradCAM / CAA settings (docs/method.md §2–§3).

    Attributes:
        scale: input scale before rounding up to the patch (CLIP-ES: 1.0).
        batch_size: images of equal input size per forward.
        method: ``'grads_batched'`` or ``'replicate'`` (:mod:`.gradcam`).
        amp: None, ``'bf16'`` or ``'fp16'`` autocast for CLIP (GPU speed).
        phi: box threshold Φ.
        caa_blocks: attention of the last this many blocks; 0: no CAA (the GradCAMs
            unrefined; an ablation, CLIP-ES's "w/o CAA").
        sinkhorn_rounds: column/row normalisation rounds.
        affinity_power: times the symmetrised affinity is squared.
        bg_power: exponent α of the background score.
        cache_memory_gb: host memory (per rank) for what VPL's second pass needs from
            the first (:mod:`.pass2_cache`), so CLIP runs once per image; None: half of
            the available memory shared by the local ranks; 0: none.
        cache_dir: a folder for entries beyond the memory bound (None: none); a rerun
            whose prototypes are learned finds them there.
        cache_disk_gb: bound of ``cache_dir``.
        cache_dtype: None (entries as computed: pass 2 gives the bits of a full second
            pass) or ``'float16'`` (half the size, small CAM differences).
    """

    scale: float = 1.0
    batch_size: int = 1
    method: str = 'grads_batched'
    amp: Optional[str] = None
    phi: float = 0.4
    caa_blocks: int = 8
    sinkhorn_rounds: int = 3
    affinity_power: int = 1
    bg_power: float = 1.0
    cache_memory_gb: Optional[float] = None
    cache_dir: Optional[str] = None
    cache_disk_gb: float = 100.0
    cache_dtype: Optional[str] = None


@dataclass
class VPLConfig:
    """Vision prototype learning settings (docs/method.md §4; see :mod:`.prototypes`).

    ``tau_t=None`` uses the CLIP model's own temperature ``1 / logit_scale``.
    ``pixel_device=None`` keeps the pixel features on CLIP's device.
    ``dtype``: of the learning's matrix products (float32: GEMM speed; the sums are exact
    in fixed point, so N ranks give the prototypes of one either way).
    ``chunk_pixels``: pixels per matrix product (memory; the result's last bits).
    ``gap_figures``: keep patch labels and report the modality-gap figures.
    """

    target: str = 'cam'
    tau_t: Optional[float] = 0.01
    tau_i: float = 0.03
    lr: float = 0.03
    iters: int = 3000
    reduction: str = 'pixel_mean'
    pixels_per_image: Optional[int] = None
    batch_pixels: Optional[int] = None
    dtype: str = 'float32'
    feature_dtype: str = 'float32'
    pixel_device: Optional[str] = None
    seed: int = 0
    log_interval: int = 100
    chunk_pixels: int = 65536
    gap_figures: bool = True


@dataclass
class Phase1Result:
    """Prototypes and log of a phase-1 run (``loaded``: taken from a finished run)."""

    prototypes: torch.Tensor
    text_prototypes: torch.Tensor
    num_fg: int
    out_dir: str
    fingerprint: str
    log: dict = field(default_factory=dict)
    loaded: bool = False
