"""Fast content checks of image and label files, without decoding the pixels.

Phase 1 and the pseudo-label dataset check every file of a split before the long work
(docs/phase1.md, *What survives what*); decoding 10,000 VOC-sized PNGs costs seconds, so
the checks here read what proves a file whole instead:

* :func:`png_problem` — a PNG's structure: signature, every chunk's CRC-32 (written by
  the encoder over the compressed data, so a bit flip, a 0-byte or truncated copy, or a
  file cut mid-chunk fails), the closing ``IEND``, and the header's size, bit depth and
  colour type (single-channel 8-bit for label maps). ~20 µs for a VOC label map against
  ~650 µs for a full decode.
* :func:`image_header` — any image's header through PIL (size, EXIF orientation); a
  JPEG must also end with its end-of-image marker (else it is decoded in full to tell
  trailing bytes from a truncated file); PNG images get :func:`png_problem`.

Each returns a short reason (for an error message that names the file) or None.
"""
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Optional, Tuple

from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOUR = {0: 'grey', 2: 'RGB', 3: 'palette', 4: 'grey+alpha', 6: 'RGBA'}
#: EXIF tag of the orientation (1 = stored as displayed).
EXIF_ORIENTATION = 0x0112


def png_problem(path: str, size: Optional[Tuple[int, int]] = None,
                label_map: bool = True) -> Optional[str]:
    """Why ``path`` is not a complete PNG (``label_map``: single-channel 8-bit, grey or
    palette) of ``size`` ``(H, W)``, or None when it is (module docstring)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return 'does not exist'
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    if not data:
        return 'is empty (0 bytes)'
    if not data.startswith(PNG_SIGNATURE):
        return 'is not a PNG file'
    pos, header = len(PNG_SIGNATURE), None
    while True:
        if pos + 8 > len(data):
            return f'is truncated ({len(data)} bytes, no IEND chunk)'
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return f'is truncated ({len(data)} bytes, cut inside a chunk)'
        crc, = struct.unpack('>I', data[end - 4:end])
        if zlib.crc32(data[pos + 4:end - 4]) != crc:
            return f'is corrupt (bad CRC of its {kind.decode("latin-1")!r} chunk)'
        if header is None:
            if kind != b'IHDR' or length != 13:
                return 'is corrupt (no IHDR header chunk)'
            header = struct.unpack('>IIBB', data[pos + 8:pos + 18])
        if kind == b'IEND':
            break
        pos = end
    width, height, depth, colour = header
    if label_map and (depth != 8 or colour not in (0, 3)):
        return (f'is a PNG of {depth}-bit {_PNG_COLOUR.get(colour, colour)}, not a '
                'single-channel 8-bit label map')
    if size is not None and (height, width) != tuple(size):
        return f'is {height}x{width}, its image is {size[0]}x{size[1]}'
    return None


@dataclass
class ImageHeader:
    """What :func:`image_header` read: ``size`` ``(H, W)`` and EXIF ``orientation``
    (None if absent), or ``problem`` (then the rest is None)."""

    size: Optional[Tuple[int, int]] = None
    orientation: Optional[int] = None
    problem: Optional[str] = None


def _jpeg_complete(path: str) -> Optional[str]:
    """None if a JPEG ends with its EOI marker, or decodes in full (trailing bytes after
    EOI are allowed); else why not."""
    with open(path, 'rb') as f:
        f.seek(-2, os.SEEK_END)
        if f.read(2) == b'\xff\xd9':
            return None
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, ValueError, SyntaxError) as e:
        return f'is truncated or corrupt ({e})'
    return None


def image_header(path: str) -> ImageHeader:
    """Size and EXIF orientation of an image from its header; a missing, empty,
    unreadable or truncated file gives ``problem`` (module docstring)."""
    try:
        if os.path.getsize(path) == 0:
            return ImageHeader(problem='is empty (0 bytes)')
        with Image.open(path) as img:
            size, fmt = (img.height, img.width), img.format
            orientation = (img.getexif().get(EXIF_ORIENTATION)
                           if fmt in ('JPEG', 'MPO', 'TIFF', 'WEBP') else None)
        if fmt in ('JPEG', 'MPO'):
            problem = _jpeg_complete(path)
        elif fmt == 'PNG':
            problem = png_problem(path, label_map=False)
        else:
            problem = None
    except FileNotFoundError:
        return ImageHeader(problem='does not exist')
    except PermissionError as e:
        return ImageHeader(problem=f'cannot be read ({e.strerror})')
    except UnidentifiedImageError:
        return ImageHeader(problem='is not an image PIL can read')
    except (OSError, ValueError, SyntaxError, struct.error) as e:
        return ImageHeader(problem=f'is truncated or corrupt ({e})')
    if problem is not None:
        return ImageHeader(problem=problem)
    return ImageHeader(size, orientation)
