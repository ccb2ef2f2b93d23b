# The VPL model (METHOD §6): the frozen CLIP ViT-B/16 of vpl_clip.py with the VPLHead
# decoder and prototype classifier. Sources of the numbers: the table at the top of
# configs/vpl_clip_voc.py. Top configs set num_classes (and, for another CLIP, the
# widths: see configs/vpl_clip_toy.py).
_base_ = './vpl_clip.py'
model = dict(
    decode_head=dict(
        type='VPLHead',
        in_channels=(768, ) * 11,
        in_index=tuple(range(11)),
        channels=256,
        num_layers=3,
        num_heads=8,
        mlp_ratio=4,
        dropout_ratio=0.1,
        embed_dims=512,
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
