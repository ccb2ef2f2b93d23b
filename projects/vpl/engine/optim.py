"""``TrainableOptimWrapperConstructor``: param groups of the trainable parameters only.

The VPL model holds a frozen CLIP (~150 M parameters in ~300 tensors). MMEngine's
``DefaultOptimWrapperConstructor`` with a ``paramwise_cfg`` logs one warning per frozen
tensor ("... is skipped since its requires_grad=False"), burying the training log under
~300 lines. This constructor skips every submodule without a trainable parameter before
MMEngine looks at it; what trains gets exactly the groups the default constructor makes.
"""
from typing import List

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor

from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor over the trainable parameters (module docstring)."""

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        if not any(p.requires_grad for p in module.parameters()):
            return  # a frozen subtree (CLIP): nothing to optimise, nothing to report
        super().add_params(params, module, prefix=prefix, is_dcn_module=is_dcn_module)
