"""The up-front scan: every input of a phase-1 split checked in seconds, before CLIP runs.

A VOC or COCO feature pass is most of an hour of GPU time; a missing image, a truncated
JPEG or a mask of the wrong size found by the pass itself (image 290 of 300, 10,000 of
10,582) wastes all of it. :func:`scan_records` reads only headers and file ends
(:mod:`projects.vpl.utils.filecheck`; docs/phase1.md, *Output, resume,
distributed*):

* every image: exists, has a readable header, is complete (a JPEG ends with its
  end-of-image marker or decodes; a PNG's chunks pass their CRC), and carries no EXIF
  orientation other than 1 — phase 1 decodes pixels as stored (PIL) while MMSeg's
  loader (OpenCV) rotates them by that tag, so its pseudo-label would be misaligned
  with the training image;
* the GT masks, when every image has one (phase 1 then uses them for its patch-label
  figures, docs/method.md §4): complete single-channel 8-bit PNGs of their image's size.

Image-level label sets are checked when the records are made
(:func:`~.images.make_records`), the class counts of model, prompts and dataset by
:func:`check_classes`. Under a process group each rank scans its share and one
all-reduce gives every rank the sizes and the verdicts, so all ranks fail together with
the same message (no rank waits at a barrier for one that died).
"""
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..utils.dist import all_reduce_sum, rank_world
from ..utils.filecheck import image_header, png_problem
from .images import ImageRecord

# verdict bits of one record
_IMAGE, _ORIENTED, _MASK, _NO_MASK = 1, 2, 4, 8
_CHUNK = 256


class InputError(ValueError):
    """The scan found bad inputs; ``problems`` lists ``'path: reason'`` lines."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class ScanResult:
    """Per record ``(H, W)`` from its header; whether every record has a GT mask."""

    sizes: List[Tuple[int, int]]
    with_masks: bool
    seconds: float


def _check(rec: ImageRecord, check_mask: bool) -> Tuple[int, int, int, List[str]]:
    """``(H, W, verdict bits, reasons)`` of one record."""
    header = image_header(rec.img_path)
    if header.problem is not None:
        return 0, 0, _IMAGE, [f'{rec.img_path}: image {header.problem}']
    (h, w), bits, reasons = header.size, 0, []
    if header.orientation not in (None, 1):
        bits |= _ORIENTED
        reasons.append(
            f'{rec.img_path}: EXIF orientation {header.orientation} (phase 1 reads the '
            'pixels as stored, MMSeg\'s loader rotates them, so the pseudo-label would not '
            'line up with the training image); rotate the pixels and drop the tag, e.g. '
            '`mogrify -auto-orient FILE` or PIL.ImageOps.exif_transpose')
    if not rec.seg_map_path:
        bits |= _NO_MASK
    elif check_mask:
        problem = png_problem(rec.seg_map_path, (h, w))
        if problem == 'does not exist':
            bits |= _NO_MASK
        elif problem is not None:
            bits |= _MASK
            reasons.append(f'{rec.seg_map_path}: GT mask {problem}')
    return h, w, bits, reasons


def _check_chunk(records: Sequence[ImageRecord], check_mask: bool) -> list:
    return [_check(r, check_mask) for r in records]


def scan_records(records: Sequence[ImageRecord], threads: int = 8, max_listed: int = 20,
                 logger: Optional[Callable[[str], None]] = None) -> ScanResult:
    """Check every record's files from headers (module docstring).

    Args:
        records: the whole split (every rank passes the same list).
        threads: reader threads per rank (network file systems: latency, not CPU).
        max_listed: problems named in the error (the count is always given).
        logger: gets one line with the time and the mask situation.

    Raises:
        InputError: on every rank, naming each bad file (up to ``max_listed``) and what
            to do.
    """
    t = time.perf_counter()
    rank, world = rank_world()
    table = torch.zeros(len(records), 3, dtype=torch.int64)
    mine = list(range(rank, len(records), world))
    chunks = [mine[i:i + _CHUNK] for i in range(0, len(mine), _CHUNK)]
    with ThreadPoolExecutor(max(1, min(threads, len(chunks)))) as pool:
        results = pool.map(lambda idx: _check_chunk([records[i] for i in idx], True),
                           chunks)
        rows = [row[:3] for res in results for row in res]
    if rows:
        table[torch.tensor(mine)] = torch.tensor(rows, dtype=torch.int64)
    all_reduce_sum(table)
    bits = table[:, 2]
    with_masks = bool(len(records)) and not bool((bits & _NO_MASK).any())
    bad = ((bits & (_IMAGE | _ORIENTED)) != 0) | (((bits & _MASK) != 0) & with_masks)
    bad_idx = bad.nonzero().flatten().tolist()
    seconds = time.perf_counter() - t
    if bad_idx:
        reasons = []
        for i in bad_idx[:max_listed]:  # re-read here for the full reasons (few files)
            _, _, _, why = _check(records[i], with_masks)
            reasons += [r for r in why if with_masks or 'GT mask' not in r]
        more = (f'\n  ... and {len(bad_idx) - max_listed} more images'
                if len(bad_idx) > max_listed else '')
        raise InputError(
            f'phase 1: {len(bad_idx)} of {len(records)} images have bad files (found by '
            f'the input scan in {seconds:.1f} s, before any CLIP work):\n  '
            + '\n  '.join(reasons) + more + '\nRepair or replace these files, or drop '
            'the images from the split, then rerun the same command.', reasons)
    if logger is not None:
        missing = int(((bits & _NO_MASK) != 0).sum())
        masks = ('GT masks of every image checked' if with_masks else
                 f'{missing} of {len(records)} images have no GT mask (the patch-label '
                 'figures use the text-prototype seeds)')
        logger(f'phase 1 [input scan]: {len(records)} images in {seconds:.1f} s; {masks}')
    return ScanResult([(int(h), int(w)) for h, w in table[:, :2].tolist()], with_masks,
                      seconds)


def check_classes(num_fg: int, num_prompts: int, model_classes: Optional[int] = None,
                  dataset_classes: Optional[Sequence[str]] = None) -> None:
    """The class counts of dataset, prompts and model agree (docs/method.md §1: the
    decode head's classifier is ``[background; W_fg]``, ``C + 1`` rows).

    Args:
        num_fg: ``C``, the foreground classes phase 1 labels.
        num_prompts: class prompts resolved for them.
        model_classes: the decode head's ``num_classes`` (background included), or None.
        dataset_classes: the dataset's class names (background first), or None.

    Raises:
        ValueError: naming every count and the key to change.
    """
    names = (f' (dataset classes: {list(dataset_classes)[:6]}'
             f'{"..." if len(dataset_classes) > 6 else ""})' if dataset_classes else '')
    if num_prompts != num_fg:
        raise ValueError(f'phase 1: {num_prompts} class prompts for {num_fg} foreground '
                         f'classes{names}; give one prompt per class')
    if model_classes is not None and model_classes != num_fg + 1:
        raise ValueError(
            f'phase 1: the model\'s decode head has num_classes={model_classes} but the '
            f'dataset and prompts give {num_fg} foreground classes + background = '
            f'{num_fg + 1}{names}; set model.decode_head.num_classes={num_fg + 1} (found '
            'before phase 1, which would otherwise run for nothing)')
