"""Fast content checks of image and label files, without decoding the pixels.

Phase 1 and the pseudo-label dataset check every file of a split before the long work
(docs/phase1.md, *Output, resume, distributed*); decoding 10,000 VOC-sized PNGs costs
seconds, so the checks here read what proves a file whole instead:

* :func:`png_problem` — a PNG's structure: signature, every chunk's CRC-32 (written by
  the encoder over the compressed data, so a bit flip, a 0-byte or truncated copy, or a
  file cut mid-chunk fails), the closing ``IEND``, and the header's size, bit depth and
  colour type (single-channel 8-bit for label maps). ~20 µs for a VOC label map against
  ~650 µs for a full decode.
* :func:`image_header` — an image's size and EXIF orientation from its header (JPEGs
  parsed here from their first 4 KB, ~3x faster than PIL; anything else through PIL);
  a JPEG must also end with its end-of-image marker (else it is decoded in full to tell
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
    """None if a JPEG decodes in full (trailing bytes after its end marker are allowed),
    else why not: the slow path, for a JPEG that does not end with its EOI marker."""
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, ValueError, SyntaxError) as e:
        return f'is truncated or corrupt ({e})'
    return None


#: JPEG start-of-frame markers (they carry the size), and markers without a length.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7}
_HEAD = 1 << 16


def _exif_orientation(app1: bytes) -> Optional[int]:
    """The orientation tag of an APP1 ``Exif`` segment's first IFD, or None."""
    if not app1.startswith(b'Exif\0\0') or len(app1) < 14:
        return None
    tiff = app1[6:]
    order = {b'II': '<', b'MM': '>'}.get(tiff[:2])
    if order is None:
        return None
    offset, = struct.unpack(order + 'I', tiff[4:8])
    if offset + 2 > len(tiff):
        return None
    count, = struct.unpack(order + 'H', tiff[offset:offset + 2])
    for i in range(count):
        entry = tiff[offset + 2 + 12 * i:offset + 14 + 12 * i]
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(order + 'HH', entry[:4])
        if tag == EXIF_ORIENTATION and kind == 3:
            return struct.unpack(order + 'H', entry[8:10])[0]
    return None


def _jpeg_frame(head: bytes) -> Optional[Tuple[Tuple[int, int], Optional[int]]]:
    """``((H, W), orientation)`` from a JPEG's first bytes, or None if the frame header
    is not among them (or the markers are not what a JPEG holds)."""
    pos, orientation = 2, None
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length, = struct.unpack('>H', head[pos + 2:pos + 4])
        if marker in _SOF:
            if pos + 9 > len(head):
                return None
            h, w = struct.unpack('>HH', head[pos + 5:pos + 9])
            return ((h, w), orientation) if h and w else None
        if marker == 0xE1 and orientation is None:
            if pos + 2 + length > len(head):
                return None
            orientation = _exif_orientation(head[pos + 4:pos + 2 + length])
        if marker == 0xDA:  # scan data before a frame header: let PIL judge
            return None
        pos += 2 + length
    return None


def _jpeg_header(path: str) -> Optional['ImageHeader']:
    """Size and orientation of a JPEG from its first 4 KB (64 KB when its EXIF block is
    longer) and its last 2 bytes, with one open and no PIL; None when the file needs
    PIL (not a JPEG, or an unusual layout)."""
    with open(path, 'rb') as f:
        head = f.read(4096)
        if head[:2] != b'\xff\xd8':
            return None
        frame = _jpeg_frame(head)
        if frame is None:
            head += f.read(_HEAD - len(head))
            frame = _jpeg_frame(head)
        if frame is None:
            return None
        f.seek(-2, os.SEEK_END)
        ends = f.read(2) == b'\xff\xd9'
    problem = None if ends else _jpeg_complete(path)
    if problem is not None:
        return ImageHeader(problem=problem)
    return ImageHeader(*frame)


def image_header(path: str) -> ImageHeader:
    """Size and EXIF orientation of an image from its header; a missing, empty,
    unreadable or truncated file gives ``problem`` (module docstring)."""
    try:
        if os.path.getsize(path) == 0:
            return ImageHeader(problem='is empty (0 bytes)')
        fast = _jpeg_header(path)
        if fast is not None:
            return fast
        with Image.open(path) as img:
            size, fmt = (img.height, img.width), img.format
            orientation = (img.getexif().get(EXIF_ORIENTATION)
                           if fmt in ('JPEG', 'MPO', 'TIFF', 'WEBP') else None)
        if fmt in ('JPEG', 'MPO'):
            with open(path, 'rb') as f:
                f.seek(-2, os.SEEK_END)
                problem = None if f.read(2) == b'\xff\xd9' else _jpeg_complete(path)
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
