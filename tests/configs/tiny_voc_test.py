# The VOC 2012 test-server config (configs/vpl_clip_voc_test.py) on the tiny random CLIP
# of the tests (patch 8): only the CLIP, the padding to its patch and a small decoder
# change; data_root is set by the test.
_base_ = ['../../configs/vpl_clip_voc_test.py']
tiny_clip_cfg = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=64, layers=3, width=64, patch_size=8, head_width=32),
    text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
data_preprocessor = dict(size_divisor=8, test_cfg=dict(size_divisor=8))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(clip=dict(_delete_=True, model_cfg=tiny_clip_cfg)),
    decode_head=dict(channels=32, num_layers=1, num_heads=2, mlp_ratio=2))
test_dataloader = dict(num_workers=0, persistent_workers=False)
randomness = dict(seed=0)
