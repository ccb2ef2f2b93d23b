"""Drawing for the toy world: background textures and textured foreground shapes.

Pure numpy / PIL / OpenCV, driven by a ``numpy.random.Generator`` so that a scene is a
function of its seed. Shapes are rasterised at 4x supersampling and area-averaged, which
gives an anti-aliased coverage ``alpha`` in [0, 1]; the mask is ``alpha >= 0.5``.
:mod:`.toy_world` decides *what* is in a scene (classes, layout, caption); this module
only decides how it looks.
"""
import math
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw

RGB = Tuple[int, int, int]
SUPERSAMPLE = 4

#: Object colours (name -> RGB); the names appear in captions.
COLOURS: Dict[str, RGB] = {
    'red': (205, 35, 35), 'orange': (240, 135, 25), 'yellow': (242, 212, 45),
    'green': (45, 165, 65), 'blue': (40, 80, 215), 'purple': (135, 55, 175),
    'pink': (245, 125, 175), 'white': (245, 245, 245), 'black': (30, 30, 35),
}
#: Surface patterns of objects (appear in captions except 'plain').
PATTERNS = ('plain', 'striped', 'dotted')
#: Nominal colour of each background concept (used to keep objects visible on it).
BACKGROUND_COLOURS: Dict[str, RGB] = {
    'grass': (60, 135, 45), 'sand': (214, 188, 140), 'water': (35, 95, 165),
    'sky': (140, 185, 235), 'wall': (160, 65, 45), 'road': (85, 85, 90),
    'snow': (236, 240, 247), 'floor': (150, 100, 60),
}


def _smooth(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise, roughly N(0, 1): a ``cells``² grid upsampled bicubically."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _tint(h: int, w: int, colour: RGB) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.float32), (h, w, 3)).copy()


def _sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (1 - t) * np.float32([95, 155, 230]) + t * np.float32([185, 212, 242])
    img = np.broadcast_to(img, (h, w, 3)).copy()
    cloud = _smooth(rng, h, w, 4) + 0.5 * _smooth(rng, h, w, 9)
    a = np.clip((cloud - 0.5) * 1.2, 0, 0.9)[..., None]
    return img * (1 - a) + a * np.float32([246, 246, 250])


def _wall(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bh = int(rng.integers(7, 11))
    bw = 2 * bh + int(rng.integers(0, 5))
    y, x = np.mgrid[0:h, 0:w]
    row = y // bh
    xs = x + (row % 2) * (bw // 2) + int(rng.integers(0, bw))
    col = xs // bw
    tone = rng.uniform(0.8, 1.15, (h // bh + 2, w // bw + 3)).astype(np.float32)
    img = _tint(h, w, BACKGROUND_COLOURS['wall']) * tone[row, col][..., None]
    img += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    mortar = (y % bh == 0) | (xs % bw == 0)
    img[mortar] = np.float32([196, 186, 176])
    return img


def _grass(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    blades = cv2.blur(rng.standard_normal((h, w)).astype(np.float32), (1, 7))
    shade = 1 + 0.5 * blades + 0.1 * _smooth(rng, h, w, 5)
    return _tint(h, w, BACKGROUND_COLOURS['grass']) * shade[..., None]


def _sand(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y = np.arange(h, dtype=np.float32)[:, None]
    dunes = np.sin(2 * np.pi * (y / (0.35 * h) + 0.25 * _smooth(rng, h, w, 3)))
    img = _tint(h, w, BACKGROUND_COLOURS['sand']) * (1 + 0.05 * dunes)[..., None]
    return img + rng.normal(0, 9, (h, w, 1)).astype(np.float32)


def _water(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    lam = rng.uniform(6, 10)
    waves = np.sin(2 * np.pi * (y / lam + 0.2 * np.sin(2 * np.pi * x / rng.uniform(20, 40)
                                                         + rng.uniform(0, 6.3))))
    img = _tint(h, w, BACKGROUND_COLOURS['water']) * (1 + 0.08 * _smooth(rng, h, w, 4))[..., None]
    return img + (np.clip(waves - 0.6, 0, None) * 110)[..., None]


def _road(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = _tint(h, w, BACKGROUND_COLOURS['road']) + rng.normal(0, 10, (h, w, 1)).astype(np.float32)
    if rng.random() < 0.7 and h >= 12:
        y0 = int(rng.integers(3, h - 5))
        x = np.arange(w)
        dash = (x + int(rng.integers(0, 22))) % 22 < 12
        colour = np.float32([232, 210, 60] if rng.random() < 0.5 else [235, 235, 235])
        img[y0:y0 + 3, dash] = colour
    return img


def _snow(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    shade = _smooth(rng, h, w, 5)
    img = _tint(h, w, BACKGROUND_COLOURS['snow']) + (6 * shade)[..., None]
    img[..., 0] -= 8 * np.clip(-shade, 0, None)
    return img + rng.normal(0, 3, (h, w, 1)).astype(np.float32)


def _floor(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ph = int(rng.integers(9, 15))
    y, x = np.mgrid[0:h, 0:w]
    plank = (y + int(rng.integers(0, ph))) // ph
    n = plank.max() + 1
    tone = rng.uniform(0.85, 1.15, n).astype(np.float32)[plank]
    grain = np.sin(x * rng.uniform(0.15, 0.3) + rng.uniform(0, 6.3, n)[plank]
                   + 0.8 * _smooth(rng, h, w, 6))
    img = _tint(h, w, BACKGROUND_COLOURS['floor']) * (tone * (1 + 0.07 * grain))[..., None]
    img[(y + 1) % ph == 0] = np.float32([95, 62, 38])
    return img


BACKGROUND_TEXTURES: Dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    'grass': _grass, 'sand': _sand, 'water': _water, 'sky': _sky,
    'wall': _wall, 'road': _road, 'snow': _snow, 'floor': _floor,
}


def render_background(rng: np.random.Generator, size: int, top: str, bottom: str,
                      horizon: int) -> np.ndarray:
    """Background image (float HxWx3): ``top`` above ``horizon``, ``bottom`` below.

    A single-concept scene has ``top == bottom``. Natural horizons (not floor/road) wave
    a little.
    """
    img = BACKGROUND_TEXTURES[bottom](rng, size, size)
    if top != bottom:
        x = np.arange(size, dtype=np.float32)
        wavy = bottom not in ('floor', 'road')
        edge = horizon + (2.5 * np.sin(x / rng.uniform(6, 14) + rng.uniform(0, 6.3))
                          if wavy else 0 * x)
        region = (np.arange(size)[:, None] >= edge[None, :]).astype(np.uint8)
        upper = BACKGROUND_TEXTURES[top](rng, size, size)
        img = np.where(region[..., None] == 1, img, upper)
    return img


def _rot(points: List[Tuple[float, float]], cx: float, cy: float, r: float,
         angle: float) -> List[Tuple[float, float]]:
    """Unit-frame points -> supersampled canvas coordinates (scale r, rotate, translate)."""
    c, s = math.cos(angle), math.sin(angle)
    return [((cx + r * (c * px - s * py)) * SUPERSAMPLE, (cy + r * (s * px + c * py)) * SUPERSAMPLE)
            for px, py in points]


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float,
             fill: int) -> None:
    k = SUPERSAMPLE
    draw.ellipse([(cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k], fill=fill)


def _star_points(inner: float) -> List[Tuple[float, float]]:
    return [((1 if i % 2 == 0 else inner) * math.sin(i * math.pi / 5),
             -(1 if i % 2 == 0 else inner) * math.cos(i * math.pi / 5)) for i in range(10)]


_CROSS = [(-.34, -1), (.34, -1), (.34, -.34), (1, -.34), (1, .34), (.34, .34), (.34, 1),
          (-.34, 1), (-.34, .34), (-1, .34), (-1, -.34), (-.34, -.34)]


def draw_shape(shape: str, size: int, cx: float, cy: float, r: float,
               angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """Coverage ``alpha`` (HxW float in [0, 1]) and a detail multiplier (HxW, <= 1).

    ``r`` is the half-size in pixels; details are the darker parts that make a shape
    recognisable beyond its outline (the tent's door, the kite's struts, the box's lid).
    """
    big = size * SUPERSAMPLE
    cover, detail = Image.new('L', (big, big), 0), Image.new('L', (big, big), 255)
    dc, dd = ImageDraw.Draw(cover), ImageDraw.Draw(detail)
    line = max(SUPERSAMPLE, int(0.12 * r * SUPERSAMPLE))
    if shape == 'ball':
        _ellipse(dc, cx, cy, r, r, 255)
    elif shape == 'box':
        pts = _rot([(-.85, -.85), (.85, -.85), (.85, .85), (-.85, .85)], cx, cy, r, angle)
        dc.polygon(pts, fill=255)
        dd.line(_rot([(-.85, -.3), (.85, -.3)], cx, cy, r, angle), fill=150, width=line)
    elif shape == 'star':
        dc.polygon(_rot(_star_points(0.48), cx, cy, r, angle), fill=255)
    elif shape == 'ring':
        _ellipse(dc, cx, cy, r, r, 255)
        _ellipse(dc, cx, cy, 0.52 * r, 0.52 * r, 0)
    elif shape == 'tent':
        dc.polygon(_rot([(0, -1), (1, .8), (-1, .8)], cx, cy, r, angle), fill=255)
        dd.polygon(_rot([(0, .05), (.32, .8), (-.32, .8)], cx, cy, r, angle), fill=110)
    elif shape == 'cross':
        dc.polygon(_rot(_CROSS, cx, cy, r, angle), fill=255)
    elif shape == 'moon':
        _ellipse(dc, cx, cy, r, r, 255)
        _ellipse(dc, cx + 0.55 * r * math.cos(angle), cy + 0.55 * r * math.sin(angle),
                 0.85 * r, 0.85 * r, 0)
    elif shape == 'kite':
        kite = [(0, -1), (.68, -.25), (0, 1), (-.68, -.25)]
        dc.polygon(_rot(kite, cx, cy, r, angle), fill=255)
        dd.line(_rot([(0, -1), (0, 1)], cx, cy, r, angle), fill=140, width=line)
        dd.line(_rot([(-.68, -.25), (.68, -.25)], cx, cy, r, angle), fill=140, width=line)
    else:
        raise ValueError(f'toy world: unknown shape {shape!r}')
    down = (size, size)
    alpha = np.asarray(cover.resize(down, Image.BOX), np.float32) / 255
    detail_map = np.asarray(detail.resize(down, Image.BOX), np.float32) / 255
    edge = np.clip(alpha - cv2.erode(alpha, np.ones((3, 3), np.uint8)), 0, 1)
    return alpha, detail_map * (1 - 0.35 * edge)


def paint_object(img: np.ndarray, alpha: np.ndarray, detail: np.ndarray, shape: str,
                 colour: RGB, pattern: str, cx: float, cy: float, r: float,
                 rng: np.random.Generator) -> None:
    """Composite a lit, patterned object of coverage ``alpha`` onto ``img`` in place."""
    size = img.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    shade = 1 + 0.18 * ((x - cx) * math.cos(phi) + (y - cy) * math.sin(phi)) / r
    if shape == 'ball':
        d2 = ((x - cx + 0.35 * r) ** 2 + (y - cy + 0.35 * r) ** 2) / (0.4 * r) ** 2
        shade = shade + 0.4 * np.exp(-d2) - 0.25 * ((x - cx) ** 2 + (y - cy) ** 2) / r ** 2
    base = np.asarray(colour, np.float32)
    pat = np.zeros_like(alpha, dtype=bool)
    if pattern == 'striped':
        psi = rng.uniform(0, np.pi)
        period = max(3.0, 0.4 * r)
        pat = np.floor((x * math.cos(psi) + y * math.sin(psi)) / period) % 2 == 1
    elif pattern == 'dotted':
        step = max(5.0, 0.55 * r)
        ox, oy = rng.uniform(0, step, 2)
        dx = (x - ox) % step - step / 2
        dy = (y - oy) % step - step / 2
        pat = dx ** 2 + dy ** 2 <= (0.22 * step) ** 2
    alt = base * 0.55 + 0.45 * 255 if base.mean() < 90 else base * 0.6
    obj = np.where(pat[..., None], alt, base) * (shade * detail)[..., None]
    img[:] = img * (1 - alpha[..., None]) + obj * alpha[..., None]
