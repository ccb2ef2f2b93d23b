"""Phase 1 end to end: features -> vision prototypes -> CAMs -> CAA -> CRF -> pseudo-labels.

:class:`Phase1` is what the ``VisionPrototypeHook`` and ``tools/generate_pseudo_labels.py``
run (docs/method.md §2–§5), in plain PyTorch (``torch.distributed`` when a process group is up):

1. *Pass 1* (``mode='vision'``): every image of this rank's shard through CLIP once — the
   GradCAMs with the text prototypes ``Z``, CAA, and the L2-normalised pixel features;
   the VPL targets ``P'`` are made per image.
2. :func:`~.prototypes.learn_prototypes` (gradient all-reduced over ranks), then the gap
   figures for ``Z`` and ``W``.
3. *Pass 2*: GradCAMs with the prototypes (``W``, or ``Z`` for ``mode='text'``, the
   CLIP-ES baseline), CAA, score stacks, DenseCRF in a worker pool, PNGs (+ CAM files).

Before pass 1 every file of the split is scanned (:mod:`.scan`, seconds). Output folder
``out_dir``: ``{name}.png``, ``cams/{name}.npz`` (optional), ``prototypes.pth`` and
``phase1_state.json`` (the fingerprint of every setting that can change a byte, and
``done`` once all ranks finished; :mod:`.folder`). A rerun with the same fingerprint
loads a finished result, or resumes: learned prototypes are reused, images whose files
pass their content check are skipped, and every batch with an unfinished image is redone
whole, so the bytes are the uninterrupted run's. A different fingerprint is an error
naming each differing key unless ``overwrite=True``.
"""
import os
import time
from dataclasses import asdict
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..utils.dist import barrier, rank_world
from .affinity import background_score, last_blocks
from .cam_pass import block_batches, cam_batches, make_cache
from .config import AMP_DTYPES, CAA_SETTINGS, CAMConfig, Phase1Result, VPLConfig
from .crf import CRFParams
from .folder import (HOW_TO_CONTINUE, PROTOTYPE_FILE, STATE_FILE, Phase1Folder,  # noqa: F401
                     digest, io_error, tensor_digest)
from .gradcam import allowed_mask, check_prototypes
from .images import ImageRecord, clip_input_size, load_mask, pending_batches, shard, shard_block
from .pass2_cache import Pass2Cache
from .pixel_set import PixelSet, PixelSetBuilder
from .prototypes import gap_metrics, image_targets, learn_prototypes
from .pseudo_labels import PseudoLabelWriter, score_stack
from .scan import ScanResult, scan_records


class _LogProgress:
    """Default progress: a log line at every 10 % with the rate."""

    def __init__(self, total: int, desc: str, logger: Callable[[str], None]) -> None:
        self.total, self.desc, self.logger = total, desc, logger
        self.done, self.start, self.next = 0, time.perf_counter(), max(1, total // 10)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self.next or self.done == self.total:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            self.logger(f'{self.desc}: {self.done}/{self.total} images ({rate:.2f} img/s)')
            self.next = self.done + max(1, self.total // 10)

    def close(self) -> None:
        pass


class Phase1:
    """One phase-1 run over a split (module docstring).

    Args:
        clip: a :class:`~projects.vpl.clip.FrozenCLIP` (on the compute device).
        records: every image of the split (all ranks get the same list).
        text_prototypes: ``Z``, ``(C+B, D)``.
        num_fg: ``C``.
        out_dir: pseudo-label folder.
        mode: ``'vision'`` (VPL) or ``'text'`` (CLIP-ES baseline).
        cam, vpl: :class:`CAMConfig`, :class:`VPLConfig`.
        crf: :class:`~.crf.CRFParams`, or None for argmax labels without CRF.
        conf_threshold: CRF confidence below which a pixel is 255.
        save_cams: also write ``cams/{name}.npz``.
        num_workers: CRF worker processes.
        logger: ``str -> None`` (rank 0 should print).
        progress: ``(total, desc) -> object with update(n), close()``.
        mean, std: RGB normalisation (0–1 scale); default CLIP's own. The hook passes the
            model's data preprocessor's, so phase 1 sees images as training does.
        scan: the up-front scan of ``records`` if already made (the hook scans before it
            encodes the text prototypes); None: :meth:`run` scans first.
    """

    def __init__(self, clip, records: Sequence[ImageRecord], text_prototypes: torch.Tensor,
                 num_fg: int, out_dir: str, mode: str = 'vision',
                 cam: CAMConfig = CAMConfig(), vpl: VPLConfig = VPLConfig(),
                 crf: Optional[CRFParams] = CRFParams(), conf_threshold: float = 0.95,
                 save_cams: bool = False, num_workers: int = 0,
                 logger: Callable[[str], None] = print,
                 progress: Optional[Callable] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 scan: Optional[ScanResult] = None) -> None:
        if mode not in ('vision', 'text'):
            raise ValueError(f"mode must be 'vision' or 'text', got {mode!r}")
        if cam.amp not in AMP_DTYPES:
            raise ValueError(f'cam.amp must be one of {list(AMP_DTYPES)}, got {cam.amp!r}')
        check_prototypes(text_prototypes, num_fg, clip.embed_dim)
        self.clip, self.records, self.num_fg = clip, list(records), num_fg
        self.mean = tuple(float(v) for v in (mean if mean is not None else clip.mean))
        self.std = tuple(float(v) for v in (std if std is not None else clip.std))
        self.text_protos = F.normalize(text_prototypes.float(), dim=1).to(clip.device)
        self.out_dir, self.mode, self.cam, self.vpl = os.fspath(out_dir), mode, cam, vpl
        self.crf, self.conf_threshold = crf, conf_threshold
        self.save_cams, self.num_workers = save_cams, num_workers
        self.logger = logger
        self.progress = progress or (lambda total, desc: _LogProgress(total, desc, logger))
        self.blocks = last_blocks(clip.num_layers, cam.caa_blocks)
        self.cam_dir = os.path.join(self.out_dir, 'cams') if save_cams else None
        self.folder = Phase1Folder(self.out_dir, self.cam_dir, logger)
        self._scan = scan
        self._pass2_cache: Optional[Pass2Cache] = None
        self._positions: Optional[dict] = None

    def with_prototypes(self, prototypes: torch.Tensor, out_dir: str,
                        records: Optional[Sequence[ImageRecord]] = None,
                        save_cams: bool = True,
                        logger: Optional[Callable[[str], None]] = None) -> 'Phase1':
        """These settings with fixed ``prototypes`` (``mode='text'``, ``prototypes`` in
        place of ``Z``): CAMs and pseudo-labels of ``records`` (default: this split)
        with, e.g., the ``W`` learned on another split, for evaluation tools."""
        return Phase1(self.clip, self.records if records is None else records,
                      prototypes, self.num_fg, out_dir, 'text', self.cam, self.vpl,
                      self.crf, self.conf_threshold, save_cams, self.num_workers,
                      logger=logger or self.logger, progress=self.progress,
                      mean=self.mean, std=self.std)

    # ------------------------------------------------------------ fingerprint
    def config(self) -> dict:
        """Every setting that can change a byte of the output (the fingerprint's content,
        :mod:`.folder`): values exact (normalisation as floats, ``Z`` by its bytes), the
        batch size and GradCAM method (a batch's composition and kernels round the odd
        pixel differently) and the devices. Not in it: the number of ranks (the learning's
        sums are exact and blocks are the split's, :mod:`.pixel_set`), the pass-2 cache
        (the same bits as recomputing, :mod:`.pass2_cache`), the gap figures and the log
        interval (the log only). With CAA off, CAA's own settings read nothing: they enter
        at their defaults (so changing them forces no rerun, and folders written before
        keep their fingerprint)."""
        cam = {k: v for k, v in asdict(self.cam).items()
               if k not in ('cache_memory_gb', 'cache_dir', 'cache_disk_gb')}
        if not self.blocks:
            defaults = asdict(CAMConfig())
            cam.update({k: defaults[k] for k in CAA_SETTINGS})
        vpl = None
        if self.mode == 'vision':
            vpl = {k: v for k, v in asdict(self.vpl).items()
                   if k not in ('log_interval', 'gap_figures')}
            vpl['pixel_device'] = torch.device(self.vpl.pixel_device or self.clip.device).type
        return dict(version=3, mode=self.mode, clip=self.clip.fingerprint,
                    device=self.clip.device.type,
                    text_prototypes=tensor_digest(self.text_protos),
                    num_fg=self.num_fg, cam=cam, vpl=vpl,
                    mean=list(self.mean), std=list(self.std),
                    crf=None if self.crf is None else self.crf.to_dict(),
                    conf_threshold=self.conf_threshold,
                    split=digest([(r.name, r.labels) for r in self.records]))

    def fingerprint(self) -> str:
        """SHA-256 of :meth:`config`."""
        return digest(self.config())

    def read_state(self) -> Optional[dict]:
        """The folder's ``phase1_state.json``, or None."""
        return self.folder.read_state()

    def scan_inputs(self) -> ScanResult:
        """The up-front scan of this split (:func:`~.scan.scan_records`; once)."""
        if self._scan is None:
            self._scan = scan_records(self.records, logger=self.logger)
        return self._scan

    def sizes(self) -> Dict[str, Tuple[int, int]]:
        """``{name: (H, W)}`` of every image, from the scan."""
        return {r.name: s for r, s in zip(self.records, self.scan_inputs().sizes)}

    def _input_sizes(self, records: Sequence[ImageRecord]) -> List[Tuple[int, int]]:
        """CLIP input sizes of ``records`` (images of this split), from the scan."""
        sizes = self.sizes()
        return [clip_input_size(*sizes[r.name], self.clip.patch_size, self.cam.scale)
                for r in records]

    def my_records(self) -> List[ImageRecord]:
        """This rank's images: whole blocks of the split (:func:`~.images.shard`)."""
        rank, world = rank_world()
        return shard(self.records, rank, world)

    # -------------------------------------------------------------------- run
    def run(self, overwrite: bool = False) -> Phase1Result:
        """Run (or load, or resume) phase 1; every rank returns the same prototypes.

        The inputs are scanned first (seconds); a finished folder of this fingerprint
        is loaded, an interrupted one resumed (docs/phase1.md, *Output, resume,
        distributed*)."""
        try:
            return self._run(overwrite)
        except OSError as e:
            if HOW_TO_CONTINUE in str(e):
                raise
            raise io_error(e, f'phase 1 stopped writing to {self.out_dir}') from e

    def _run(self, overwrite: bool) -> Phase1Result:
        rank, world = rank_world()
        t0 = time.perf_counter()
        self.scan_inputs()
        fp, config, sizes = self.fingerprint(), self.config(), self.sizes()
        state = self.read_state()
        if (state is not None and state.get('fingerprint') != fp) or (
                state is None and self.folder.has_labels()):
            if not overwrite:
                raise RuntimeError(self.folder.refusal(state, config))
            barrier()
            if rank == 0:
                self.folder.clear(self.records)
            state = None
        if state is not None and state.get('done'):
            unfinished = self.folder.unfinished(self.records, sizes)
            data = (None if unfinished else
                    self.folder.load_prototypes(fp, tuple(self.text_protos.shape)))
            if data is not None:
                self.logger(f'phase 1: loaded the finished result in {self.out_dir}')
                return Phase1Result(data['prototypes'], self.text_protos.cpu(), self.num_fg,
                                    self.out_dir, fp, state.get('log', {}), loaded=True)
        barrier()
        if rank == 0:
            os.makedirs(self.out_dir, exist_ok=True)
            self.folder.remove_temporaries()
            self.folder.write_state(fp, config, done=False)
        barrier()
        log = dict(times={}, world_size=world)
        protos = self._prototypes(log)
        t = time.perf_counter()
        mine = self.my_records()
        unfinished = self.folder.unfinished(mine, sizes)
        self.folder.report_damaged(unfinished)
        groups = block_batches(mine, self._input_sizes(mine), self.records,
                               self.cam.batch_size)
        todo, finished = pending_batches(mine, groups, lambda r: r.name not in unfinished)
        self._write_labels(todo, protos)
        barrier()
        log['times']['pseudo_labels'] = time.perf_counter() - t
        log['times']['total'] = time.perf_counter() - t0
        log['images'] = len(self.records)
        skipped = f' ({finished} were finished)' if finished else ''
        self.logger(f'phase 1 [pseudo-labels]: {len(todo)} images of this rank written in '
                    f'{log["times"]["pseudo_labels"]:.1f} s{skipped}; total '
                    f'{log["times"]["total"]:.1f} s')
        if rank == 0:
            self.folder.write_state(fp, config, done=True, log=log)
        barrier()
        return Phase1Result(protos.cpu(), self.text_protos.cpu(), self.num_fg,
                            self.out_dir, fp, log)

    def learn(self, overwrite: bool = False) -> Tuple[torch.Tensor, dict]:
        """The prototypes without pass 2: ``Z`` in text mode, else ``W`` (pass 1 +
        learning, or ``out_dir/prototypes.pth`` when its fingerprint matches), and the log
        (loss, gap figures; times when learned now). For tools that score prototypes on
        other splits (:meth:`with_prototypes`) without this split's pseudo-labels.
        ``overwrite``: replace a prototype file of another configuration."""
        self.scan_inputs()
        path = self.folder.prototype_path
        if rank_world()[0] == 0:
            os.makedirs(self.out_dir, exist_ok=True)
            if overwrite and os.path.isfile(path):
                saved = torch.load(path, map_location='cpu', weights_only=True)
                if saved.get('fingerprint') != self.fingerprint():
                    os.unlink(path)
        barrier()
        log = dict(times={}, world_size=rank_world()[1])
        protos = self._prototypes(log)
        if self._pass2_cache is not None:  # no pass 2 here
            self._pass2_cache.close()
            self._pass2_cache = None
        return protos, log

    # ------------------------------------------------------------- prototypes
    def _prototypes(self, log: dict) -> torch.Tensor:
        """``Z`` (text mode), saved ``W`` (resume), or pass 1 + learning."""
        data = (self.folder.load_prototypes(self.fingerprint(), tuple(self.text_protos.shape))
                if self.mode == 'vision' else None)
        if self.mode == 'text':
            protos = self.text_protos
        elif data is not None:
            log.update(data.get('log', {}))
            self.logger(f'phase 1: reusing the learned prototypes in '
                        f'{self.folder.prototype_path}')
            return data['prototypes'].to(self.clip.device)
        else:
            protos = self._learn(log)
        if rank_world()[0] == 0:
            self.folder.save_prototypes(dict(
                prototypes=protos.cpu(), num_fg=self.num_fg, fingerprint=self.fingerprint(),
                log={k: v for k, v in log.items() if k != 'times'}))
        barrier()
        return protos

    def collect_pixels(self, for_pass2: bool = False) -> PixelSet:
        """Pass 1 over this rank's shard: pixel features, ``G'`` of the VPL targets and,
        with ``vpl.gap_figures``, patch labels (GT when every image has a mask, else the
        text-prototype seeds), in buffers sized from the image headers
        (:class:`~.pixel_set.PixelSetBuilder`). ``for_pass2``: also keep what pass 2
        needs (:mod:`.pass2_cache`)."""
        vpl = self.vpl
        tau_t = vpl.tau_t if vpl.tau_t is not None else 1.0 / self.clip.logit_scale
        records = self.my_records()
        blocks = [self._global_index()[r.name] // shard_block(len(self.records))
                  for r in records]
        ids = sorted(set(blocks))
        counts = [h * w // self.clip.patch_size ** 2 for h, w in self._input_sizes(records)]
        with_gt = vpl.gap_figures and all(r.seg_map_path and os.path.isfile(r.seg_map_path)
                                          for r in self.records)
        device = torch.device(vpl.pixel_device) if vpl.pixel_device else self.clip.device
        builder = PixelSetBuilder(
            counts, [blocks.count(b) for b in ids], ids,
            -(-len(self.records) // shard_block(len(self.records))), self.clip.embed_dim,
            len(self.text_protos), vpl.pixels_per_image, vpl.seed,
            getattr(torch, vpl.feature_dtype), device, with_labels=vpl.gap_figures)
        if for_pass2:
            host = builder.set.nbytes() if device.type == 'cpu' else 0
            self._pass2_cache = self._make_cache(reserve=host)
        position = {r.name: j for j, r in enumerate(records)}
        bar = self.progress(len(records), 'phase 1 [features]')
        for batch, images, out, refined in self.cam_batches(
                records, self.text_protos, True, self._pass2_cache, store=for_pass2):
            for i, rec in enumerate(batch):
                feats = out.features[i].flatten(1).t()
                allowed = allowed_mask([rec.labels], self.num_fg, len(self.text_protos),
                                       feats.device)[0]
                targets = image_targets(feats, self.text_protos, allowed, self.num_fg,
                                        vpl.target, tau_t, rec.labels, refined[i].flatten(1))
                builder.add(position[rec.name], rec.name, feats, allowed, targets,
                            self._patch_labels(rec, images[i], out.grid, refined[i], with_gt)
                            if vpl.gap_figures else None)
            bar.update(len(batch))
        bar.close()
        return builder.build('gt' if with_gt else 'pseudo')

    def _patch_labels(self, rec: ImageRecord, image, grid: Tuple[int, int],
                      refined: torch.Tensor, with_gt: bool) -> torch.Tensor:
        """Patch labels for the gap figures: the GT mask (nearest) or the text seeds."""
        if with_gt:
            gt = load_mask(rec.seg_map_path, image.shape[:2])
            gt = F.interpolate(torch.from_numpy(gt)[None, None].float(), size=grid,
                               mode='nearest-exact')
            return gt.flatten().long()
        keys = torch.tensor([0] + rec.labels)
        stack = torch.cat([background_score(refined, self.cam.bg_power), refined])
        return keys[stack.argmax(dim=0).flatten().cpu()]

    def learn_from(self, pixels: PixelSet, **overrides) -> Tuple[torch.Tensor, dict]:
        """:func:`~.prototypes.learn_prototypes` on ``pixels`` with this run's settings
        (``overrides``: its keyword arguments, e.g. ``lr``, ``iters``, ``logger``)."""
        vpl = self.vpl
        kwargs = dict(tau_i=vpl.tau_i, lr=vpl.lr, iters=vpl.iters, reduction=vpl.reduction,
                      batch_pixels=vpl.batch_pixels, seed=vpl.seed,
                      log_interval=vpl.log_interval, dtype=getattr(torch, vpl.dtype),
                      chunk=vpl.chunk_pixels, device=pixels.features.device)
        kwargs.update(overrides)
        return learn_prototypes(pixels, self.text_protos.to(kwargs['device']), **kwargs)

    def _learn(self, log: dict) -> torch.Tensor:
        """Pass 1 (:meth:`collect_pixels`), then :func:`learn_prototypes` and the gap."""
        vpl, t = self.vpl, time.perf_counter()
        pixels = self.collect_pixels(for_pass2=True)
        device = pixels.features.device
        log['times']['features'] = time.perf_counter() - t
        cache = self._pass2_cache
        kept = '' if cache is None else (
            f'; kept for pass 2: {cache.stats["stored_memory"]} images in memory '
            f'({cache.used["memory"] / 2 ** 30:.2f} GB), {cache.stats["stored_disk"]} on '
            f'disk, {cache.stats["full"]} not kept')
        self.logger(f'phase 1 [features]: {len(pixels)} pixels on this rank '
                    f'({pixels.nbytes() / 2 ** 30:.2f} GB, '
                    f'{pixels.nbytes() / max(1, len(pixels)):.0f} B per pixel) in '
                    f'{log["times"]["features"]:.1f} s{kept}')
        t = time.perf_counter()
        protos, vpl_log = self.learn_from(pixels, logger=self.logger)
        log['times']['learning'] = time.perf_counter() - t
        log['vpl'] = vpl_log
        gap = ''
        if pixels.labels is not None:
            z = self.text_protos.to(device)
            log['gap'] = dict(labels=pixels.labels_source,
                              text=gap_metrics(pixels, z, z, self.num_fg),
                              vision=gap_metrics(pixels, protos, z, self.num_fg))
            gap = '; text -> vision prototypes ({} patch labels): {}'.format(
                pixels.labels_source, ', '.join(
                    f'{k} {log["gap"]["text"][k]:.4f} -> {log["gap"]["vision"][k]:.4f}'
                    for k in ('patch_acc', 'patch_acc_fg', 'centroid_gap', 'proto_shift')))
        self.logger(f'phase 1 [learning]: {vpl.iters} iterations in '
                    f'{log["times"]["learning"]:.1f} s; loss {vpl_log["loss"][0][1]:.4f} -> '
                    f'{vpl_log["loss"][-1][1]:.4f}{gap}')
        return protos.to(self.clip.device)

    # ------------------------------------------------------------------ CAMs
    def _global_index(self) -> dict:
        if self._positions is None:
            self._positions = {r.name: i for i, r in enumerate(self.records)}
        return self._positions

    def _make_cache(self, reserve: int = 0) -> Optional[Pass2Cache]:
        return make_cache(self, reserve)

    def cam_batches(self, records: Sequence[ImageRecord], protos: torch.Tensor,
                    features: bool, cache: Optional[Pass2Cache] = None,
                    store: bool = False) -> Iterator[tuple]:
        """GradCAMs with ``protos`` and their CAA refinement of ``records``, as both
        passes make them (:func:`~.cam_pass.cam_batches`). Public so that analysis tools
        show the CAMs phase 1 uses."""
        return cam_batches(self, records, protos, features, cache, store)

    def _write_labels(self, records: List[ImageRecord], protos: torch.Tensor) -> None:
        """Pass 2: CAMs with ``protos`` (from the pass-2 cache where it holds the images),
        CAA, score stacks -> CRF workers -> files."""
        cache = self._pass2_cache
        if cache is None and self.mode == 'vision' and self.cam.cache_dir:
            cache = self._make_cache()  # a rerun: entries an earlier pass 1 left on disk
        bar = self.progress(len(records), 'phase 1 [pseudo-labels]')
        with PseudoLabelWriter(self.out_dir, self.cam_dir, self.crf, self.conf_threshold,
                               self.num_workers) as writer:
            for batch, images, _, refined in self.cam_batches(records, protos, False, cache):
                for rec, im, ref in zip(batch, images, refined):
                    scores = score_stack(ref, im.shape[:2], self.cam.bg_power)
                    writer.submit(rec.name, im, scores.cpu().numpy(), [0] + rec.labels)
                    if cache is not None:
                        cache.discard(rec.name)
                bar.update(len(batch))
        bar.close()
        if cache is not None:
            self.logger(f'phase 1 [pseudo-labels]: {cache.stats["hits"]} images from the '
                        f'pass-2 cache (last block only), the others recomputed')
            cache.close()
        self._pass2_cache = None
