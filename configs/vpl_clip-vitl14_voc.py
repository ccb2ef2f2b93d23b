# VPL on PASCAL VOC 2012 (aug) with CLIP ViT-L/14 instead of ViT-B/16: configs/vpl_clip_voc.py
# with another open_clip model. The decoder's input widths (1024), the blocks it reads
# (1-23 of 24) and the prototype dimension (D = 768) come from the backbone
# (CLIPEncoderDecoder); what changes here is the CLIP and what its patch size (14) forces:
#   clip: open_clip 'ViT-L-14', OpenAI's weights (offline: checkpoint='/path/ViT-L-14.pt'
#     with force_quick_gelu=True, see README "CLIP weights")                        O
#   padding to multiples of 14; training crop 322 = 23 x 14 (ViT-B/16's 320 is not a
#     multiple of 14; the closest one)                                              O
# Every other number (phase 1 included: CAA over the last 8 blocks, Φ 0.4, τ_I 0.03,
# T_w 3000; decoder 256 wide, 3 layers; schedule) is the ViT-B/16 config's; the paper
# reports ViT-B/16 only.
#   bash tools/dist_train.sh configs/vpl_clip-vitl14_voc.py 8
_base_ = ['./vpl_clip_voc.py']

patch_size = 14
crop_size = (322, 322)
data_preprocessor = dict(
    size=crop_size, size_divisor=None, test_cfg=dict(size_divisor=patch_size))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(clip=dict(model_name='ViT-L-14', pretrained='openai')))
train_pipeline = [
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else t
    for t in _base_.train_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
