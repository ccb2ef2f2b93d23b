# EncoderDecoder on a frozen CLIP ViT-B/16 (docs/method.md §0, §6). The decode head is set by the
# top-level configs (VPLHead for VPL; any MMSeg head works on these maps).
# CLIPEncoderDecoder = MMSeg's EncoderDecoder that fills head keys left None (in_channels,
# in_index, embed_dims) from the backbone, and out_indices=None = every block but the last:
# another open_clip ViT needs only another `clip` (configs/vpl_clip-vitl14_voc.py).
# CLIP's normalisation lives here, in the data preprocessor (mean/std × 255, RGB);
# Inputs are padded to multiples of the patch size (16): `size_divisor` in training and
# `test_cfg.size_divisor` at test time (MMSeg pads test inputs only with the latter, then
# crops the padding off the prediction). It is set on this top-level variable because
# with --tta the runner hands it to the TTA model, which overwrites the module's own.
clip_mean = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
clip_std = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=clip_mean,
    std=clip_std,
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=16,
    test_cfg=dict(size_divisor=16))
model = dict(
    type='CLIPEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='CLIPVisionBackbone',
        # open_clip name + tag; offline: clip=dict(model_name='ViT-B-16',
        # checkpoint='/path/ViT-B-16.pt') — see README. OpenAI's weights were trained
        # with QuickGELU (open_clip >= 3 would build GELU for the tag; a contradicting
        # force_quick_gelu is an error). Positional table: bilinear, rounded to fp16 as
        # CLIP-ES and WeCLIP do (docs/method.md §0, §2).
        clip=dict(model_name='ViT-B-16', pretrained='openai', force_quick_gelu=True,
                  pos_interpolation='bilinear', pos_embed_fp16=True),
        out_indices=None),              # None: blocks 1..L-1 (1..11 on ViT-B/16)
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
