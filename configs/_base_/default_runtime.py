# MMSeg's default runtime, with the distributed backend left to the tools:
# tools/train.py / test.py pick NCCL on CUDA and gloo on CPU (projects.vpl.utils.launch).
default_scope = 'mmseg'
custom_imports = dict(imports=['projects.vpl'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# MMSeg's SegTTAModel (softmax probabilities of the views averaged) with the option of
# WeCLIP's test CRF: --tta --cfg-options tta_model.use_crf=True (any decoder).
tta_model = dict(type='VPLSegTTAModel', merge='probs', use_crf=False)
