# The VPL model (docs/method.md §6): the frozen CLIP ViT-B/16 of vpl_clip.py with the VPLHead
# decoder and prototype classifier. Sources of the numbers: the table at the top of
# configs/vpl_clip_voc.py. Top configs set num_classes. The input widths, the blocks read
# and the prototype dimension (None) come from the CLIP backbone (CLIPEncoderDecoder):
# (768,) * 11, blocks 1-11 and D = 512 on ViT-B/16.
_base_ = './vpl_clip.py'
model = dict(
    decode_head=dict(
        type='VPLHead',
        in_channels=None,
        in_index=None,
        channels=256,
        num_layers=3,
        num_heads=8,
        mlp_ratio=4,
        dropout_ratio=0.1,
        embed_dims=None,
        num_classes=21,
        classifier='cosine',
        logit_scale=1 / 0.03,
        learnable_logit_scale=False,
        train_prototypes=True,
        balanced_ce=True,
        loss_decode=dict(
            type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
        loss_rsc=dict(
            type='RSCLoss', temperature=0.1, negatives='all', loss_weight=1.0),
        rsc_classes='seg',
        align_corners=False))
