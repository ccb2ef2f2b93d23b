# VPL phase 1 on PASCAL VOC (docs/method.md §2-§5): the VisionPrototypeHook runs at before_train
# (or alone: python tools/generate_pseudo_labels.py CONFIG). Every number of phase 1 is
# here; override one with e.g. --cfg-options custom_hooks.0.vpl.tau_i=0.05.
# vpl_coco.py and the CLIP-ES baselines (clip_es_*.py) inherit this hook and state only
# what they change.
# Where each number comes from (P = the VPL paper / docs/method.md, C = CLIP-ES's code,
# O = our choice, documented in projects/vpl/cam/*):
#   text prototypes: CLIP-ES class synonyms + 25 background concepts, the 'ensemble'
#     of templates (the paper's headline setting: Table 3 row I = Table 4's
#     Baseline_e; VPL_e 68.2 vs VPL_s 66.8): OpenAI CLIP's 80 ImageNet templates
#     (projects/vpl/clip/prompts.py says why); CLIP-ES's baselines keep its single
#     'a clean origami {}.' (clip_es_voc.py)                                       C / P
#   GradCAM: input rounded up to multiples of 16, scale 1.0, target = softmax prob
#     over [present classes; background concepts], min-max normalised twice        C
#   CAA: last 8 blocks, 3 Sinkhorn rounds, symmetrise, square once, Φ = 0.4         C / P
#   VPL target: text-prototype refined CAMs ('cam'; 'text' = the text softmax)      O
#   τ_T = 0.01, τ_I = 0.03, T_w = 3000                                             P
#   α = 0.03 with the loss averaged over pixels ('pixel_mean'): calibrated, stable
#     on the toy CLIP (to 0.1; best toy seeds at 0.01-0.03), a VOC-shaped synthetic
#     problem (to 0.3) and the planning prototype (0.03-0.1). The paper's α = 10
#     read as 'element_mean' (F.kl_div's default mean) is 10 / 45 = 0.22 per pixel
#     here: docs/phase1.md, "Calibrating the VPL learning rate"                     O
#   full batch over all patches; float32 matrix products, sums over pixels exact in
#     fixed point (N ranks = 1 rank, bit for bit; docs/phase1.md)                  O
#   pass 2 from what pass 1 kept (last block's input + CAA matrix, exact): CLIP
#     runs once per image; host memory: half the free RAM by default             O
#   background score (1 - max cam)^1                                               C
#   CRF: 10 iterations, Gaussian sxy 1 compat 3, bilateral sxy 67 srgb 3 compat 4
#     on CLIP-ES's image uint8(BGR - mean), confidence < 0.95 -> 255               C
custom_hooks = [
    dict(
        type='VisionPrototypeHook',
        prototypes='vision',          # 'text': the CLIP-ES baseline (clip_es_voc.py)
        clip=None,                    # None: the model's CLIP backbone
        class_prompts='voc',
        background='voc',
        templates='ensemble',
        out_dir=None,                 # None: the dataset's pseudo_label_dir, else
                                      # {work_dir}/pseudo_labels
        save_cams=False,              # True: refined CAMs for seed mIoU (eval tool)
        overwrite=False,
        cam=dict(scale=1.0, batch_size=1, method='grads_batched', amp=None, phi=0.4,
                 caa_blocks=8, sinkhorn_rounds=3, affinity_power=1, bg_power=1.0,
                 cache_memory_gb=None, cache_dir=None, cache_disk_gb=100.0,
                 cache_dtype=None),
        vpl=dict(target='cam', tau_t=0.01, tau_i=0.03, lr=0.03, iters=3000,
                 reduction='pixel_mean', pixels_per_image=None, batch_pixels=None,
                 dtype='float32', feature_dtype='float32', pixel_device=None, seed=0,
                 log_interval=100, chunk_pixels=65536, gap_figures=True),
        crf=dict(iters=10, pos_sxy=1, pos_compat=3, bi_sxy=67, bi_srgb=3, bi_compat=4,
                 image='clip_es'),
        conf_threshold=0.95,
        num_workers=4)
]
