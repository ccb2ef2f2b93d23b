# configs/vpl_clip_voc.py on the tests' tiny random CLIP (patch 8): only the CLIP, the
# padding to its patch, a small decoder and loader workers change; data_root and the
# iteration counts are set by the tests.
_base_ = ['../../configs/vpl_clip_voc.py']
tiny_clip_cfg = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=64, layers=3, width=64, patch_size=8, head_width=32),
    text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
data_preprocessor = dict(size_divisor=None, test_cfg=dict(size_divisor=8))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(clip=dict(_delete_=True, model_cfg=tiny_clip_cfg)),
    decode_head=dict(channels=32, num_layers=1, num_heads=2, mlp_ratio=2))
custom_hooks = [dict(_base_.custom_hooks[0], num_workers=0,
                     cam=dict(_base_.custom_hooks[0].cam, caa_blocks=2))]
train_dataloader = dict(num_workers=0, persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
randomness = dict(seed=0)
