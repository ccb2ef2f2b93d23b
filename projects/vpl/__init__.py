"""VPL — Vision Prototype Learning for WSSS with CLIP (AAAI 2025), as an MMSeg 1.x extension.

``import projects.vpl`` (or ``custom_imports=dict(imports=['projects.vpl'])`` in a
config) registers every component: the frozen CLIP backbone, the VPL decode head and RSC
loss, the datasets, the vision-prototype hook and the metrics. ``compat`` comes first: it
makes MMSeg importable with mmcv-lite and MMEngine checkpoints loadable under torch >= 2.6.
"""
from . import compat  # noqa: F401  (must run before mmseg.models is imported)
from . import clip, datasets, engine, evaluation, models  # noqa: F401
from . import apis  # noqa: F401  (uses the hook: after engine)

__version__ = '0.1.0'
