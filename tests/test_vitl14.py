"""Any open_clip ViT: the ViT-L/14 config runs the whole pipeline on CPU (a rehearsal).

``configs/vpl_clip-vitl14_voc.py`` names only the CLIP; the decoder's input widths, the
blocks it reads and the prototype dimension come from the backbone. The rehearsal runs
``tools/train.py`` on it (phase 1, a decoder step with backward, validation) with random
ViT-L/14 weights on a two-image synthetic VOC 2012 folder, overriding only the data root,
the image count and loader workers, the iteration counts (one checkpoint) and the weights
(random, seeded) — and the prompt templates: the config's ensemble is 80 templates x 45
prompts = 3,600 texts through ViT-L's text tower, about 2 minutes on one CPU thread, so
the rehearsal encodes the single template (45 texts); the code path is the same.
"""
import re
import sys

import pytest
import torch

from conftest import ONE_THREAD, ROOT
from synthetic_datasets import make_voc_aug
from test_tools import run_tool

CONFIG = ROOT / 'configs/vpl_clip-vitl14_voc.py'


@pytest.mark.slow
def test_vitl14_config_cpu_rehearsal(tmp_path):
    data = tmp_path / 'VOC2012'
    make_voc_aug(data, {'train_aug': 2, 'val': 1}, sizes=((56, 70), ))
    work = tmp_path / 'work'
    options = [
        'model.backbone.clip.pretrained=None', 'randomness.seed=0',  # random weights
        'train_dataloader.dataset.dataset.data_root=' + str(data),   # data root
        'val_dataloader.dataset.data_root=' + str(data),
        'test_dataloader.dataset.data_root=' + str(data),
        'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',  # 2 images
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'custom_hooks.0.num_workers=0',
        'custom_hooks.0.vpl.iters=3', 'train_cfg.max_iters=1',       # iterations
        'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.save_best=None',                   # one 1.7 GB file
        'custom_hooks.0.templates=single',                           # 45 texts, not 3,600
    ]
    log = run_tool([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work),
                    '--cfg-options', *options], env_extra=ONE_THREAD, timeout=1500)
    assert 'phase 1 [learning]: 3 iterations' in log
    assert re.search(r'Iter\(val\) \[1/1\].*mIoU: [0-9.]+', log), log[-2000:]
    assert 'Saving checkpoint at 1 iterations' in log
    protos = torch.load(work / 'vpl_prototypes.pth', map_location='cpu', weights_only=False)
    assert protos['prototypes'].shape == (20 + 25, 768)      # VOC + background, D of L/14
    state = torch.load(work / 'iter_1.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    mlps = {k for k in state if k.startswith('decode_head.level_mlps.') and
            k.endswith('.0.weight')}
    assert len(mlps) == 23                                    # blocks 1..23 of 24
    assert state['decode_head.level_mlps.0.0.weight'].shape == (256, 1024, 1, 1)
    assert state['decode_head.embed.weight'].shape[0] == 768
    assert state['decode_head.prototypes'].shape == (21, 768)
    # the classifier was initialised from the learned vision prototypes, which the
    # checkpoint carries
    assert bool(state['decode_head.prototypes_initialized'])
    meta = torch.load(work / 'iter_1.pth', map_location='cpu',
                      weights_only=False)['meta']['vpl_prototypes']
    assert torch.equal(meta['prototypes'], protos['prototypes'])
