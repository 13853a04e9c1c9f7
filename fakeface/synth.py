"""Synthetic face corpus in the real data set's layout (`python -m fakeface.synth`).

Faces are drawn procedurally with Pillow; a fake is a face with some of its eyes, nose and mouth
pasted from another face, blended crudely (easy), with some feathering (mid) or carefully (hard).
Image i depends only on (seed, kind, i), so any worker count gives byte-identical files.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import io
import math
import multiprocessing as mp
import os
import re
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from fakeface.errors import FakefaceError

# Order of the 4 flag digits in a fake's name; left_eye is the eye on the image's left.
REGIONS = ("left_eye", "right_eye", "nose", "mouth")
LEVELS = ("easy", "mid", "hard")

REAL_DIR = "training_real"
FAKE_DIR = "training_fake"
JPEG_QUALITY = 90
MIN_SIZE = 32

Box = tuple[int, int, int, int]

# Second word of every image's seed, so real i, fake i and level block i never share a stream.
_KIND_REAL, _KIND_FAKE, _KIND_LEVEL = 0, 1, 2
# The data set's easy:mid:hard proportion is 1:2:1; each block of 4 fakes gets one seeded shuffle
# of this, so counts are exact for every multiple of 4 and a fake's level does not depend on N.
_LEVEL_CYCLE = ("easy", "mid", "mid", "hard")
_MAX_CHUNK = 64
_NOISE_POOL_SEED = 0x5EED
_TMP_SUFFIX = ".part"
_INDEX = re.compile(r"(?:real|easy|mid|hard)_(\d+)(?:_[01]{4})?\.jpg")

_SKIN_LIGHT = np.array([246.0, 214.0, 190.0])
_SKIN_DARK = np.array([88.0, 56.0, 40.0])
_HAIR = (
    (25, 20, 18),
    (60, 40, 28),
    (105, 70, 40),
    (170, 130, 80),
    (215, 185, 125),
    (140, 62, 30),
    (150, 150, 150),
    (228, 228, 222),
)
_IRIS = ((70, 45, 25), (110, 75, 40), (60, 100, 150), (80, 120, 90), (110, 115, 120), (40, 30, 25))


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Pose:
    """Maps face-local pixel offsets (x right, y down, origin at the face centre) to the image."""

    cx: float
    cy: float
    cos: float
    sin: float

    def xy(self, lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (self.cx + lx * self.cos - ly * self.sin, self.cy + lx * self.sin + ly * self.cos)

    def poly(self, lx: np.ndarray, ly: np.ndarray) -> list[tuple[float, float]]:
        x, y = self.xy(np.asarray(lx, dtype=float), np.asarray(ly, dtype=float))
        return list(zip(x.tolist(), y.tolist(), strict=True))

    def ellipse(
        self, x: float, y: float, rx: float, ry: float, t0: float = 0.0, t1: float = 2 * math.pi
    ) -> list[tuple[float, float]]:
        # ImageDraw.ellipse cannot rotate; a polygon through the pose can.
        n = int(min(64, max(10, (rx + ry) * (t1 - t0) / 6)))
        t = np.linspace(t0, t1, n)
        return self.poly(x + rx * np.cos(t), y + ry * np.sin(t))

    def box(self, x0: float, y0: float, x1: float, y1: float, size: int) -> Box:
        xs, ys = self.xy(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
        bx0 = int(min(max(math.floor(xs.min()), 0), size - 2))
        by0 = int(min(max(math.floor(ys.min()), 0), size - 2))
        bx1 = int(max(min(math.ceil(xs.max()), size), bx0 + 2))
        by1 = int(max(min(math.ceil(ys.max()), size), by0 + 2))
        return (bx0, by0, bx1, by1)


def decompression_bomb_png(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose header declares `width` x `height` RGB pixels (a bad upload)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


def _rgb(color: np.ndarray | tuple[float, ...], scale: float = 1.0) -> tuple[int, int, int]:
    r, g, b = np.clip(np.rint(np.asarray(color, dtype=float) * scale), 0, 255).astype(int).tolist()
    return (r, g, b)


def _jitter(rng: np.random.Generator, color: tuple[int, ...], amount: float) -> np.ndarray:
    return np.clip(np.asarray(color, dtype=float) + rng.normal(0.0, amount, 3), 0, 255)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    # A flat fill is ~10x cheaper than a full-size gradient; the shapes and the coloured lighting
    # wash in _finish give the variety.
    base = rng.uniform(30, 226, 3)
    img = Image.new("RGB", (size, size), _rgb(base))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 6))):
        x, y = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(0.05, 0.4, 2) * size
        fill = _rgb(np.clip(base + rng.normal(0.0, 50.0, 3), 0, 255))
        if rng.random() < 0.5:
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill)
        else:
            draw.rectangle((x - rx, y - ry, x + rx, y + ry), fill=fill)
    return img


def _draw_eye(
    draw: ImageDraw.ImageDraw,
    pose: _Pose,
    rng: np.random.Generator,
    ex: float,
    ey: float,
    ew: float,
    eh: float,
    skin: np.ndarray,
    iris: np.ndarray,
    brow: np.ndarray,
    gaze: float,
    size: int,
) -> None:
    line = max(1, round(size / 300))
    draw.polygon(pose.ellipse(ex, ey - eh * 0.2, ew * 1.2, eh * 1.6), fill=_rgb(skin, 0.86))
    draw.polygon(pose.ellipse(ex, ey, ew, eh), fill=_rgb(_jitter(rng, (236, 232, 226), 6)))
    ir = eh * rng.uniform(0.8, 0.95)
    ix = ex + gaze * ew * 0.3
    draw.polygon(pose.ellipse(ix, ey, ir, min(ir, eh * 0.95)), fill=_rgb(iris))
    draw.polygon(pose.ellipse(ix, ey, ir * 0.45, ir * 0.45), fill=(18, 14, 12))
    draw.polygon(pose.ellipse(ix + ir * 0.3, ey - ir * 0.3, ir * 0.15, ir * 0.15), fill=(250,) * 3)
    draw.line(pose.ellipse(ex, ey, ew, eh, math.pi, 2 * math.pi), fill=_rgb(skin, 0.35), width=line)
    # Brow: a tapered arc above the eye; drawn as one polygon (upper edge, then lower edge back).
    t = np.linspace(-1.0, 1.0, 12)
    bx = ex + t * ew * 1.15
    by = ey - eh * rng.uniform(1.9, 2.5) - eh * rng.uniform(0.2, 0.8) * (1 - t * t)
    thick = eh * rng.uniform(0.3, 0.55) * (1.0 - 0.5 * np.abs(t))
    draw.polygon(pose.poly(np.r_[bx, bx[::-1]], np.r_[by - thick, by[::-1]]), fill=_rgb(brow))


def _draw_face(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict[str, Box]]:
    """Face and landmark boxes on a background, before blur, lighting and noise."""
    s = float(size)
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)

    a = s * rng.uniform(0.2, 0.25)  # half-width of the head
    b = a * rng.uniform(1.2, 1.42)  # half-height
    angle = rng.uniform(-0.14, 0.14)
    pose = _Pose(
        s * (0.5 + rng.uniform(-0.06, 0.06)),
        s * (0.5 + rng.uniform(-0.04, 0.06)),
        math.cos(angle),
        math.sin(angle),
    )
    yaw = rng.uniform(-0.12, 0.12)  # turns the head: features slide sideways
    tone = rng.uniform()
    skin = np.clip(_SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0, 6, 3), 0, 255)
    hair = _jitter(rng, _HAIR[int(rng.integers(len(_HAIR)))], 8)
    iris = _jitter(rng, _IRIS[int(rng.integers(len(_IRIS)))], 10)
    clothes = rng.uniform(0, 255, 3)
    hair_style = rng.choice(3, p=[0.1, 0.5, 0.4])  # bald, short, long

    if hair_style == 2:
        draw.polygon(
            pose.ellipse(0, b * rng.uniform(0.0, 0.3), a * rng.uniform(1.1, 1.35), b * 1.25),
            fill=_rgb(hair),
        )
    neck = _rgb(skin, 0.8)
    draw.polygon(
        pose.poly([-0.45 * a, 0.45 * a, 0.5 * a, -0.5 * a], [0.6 * b, 0.6 * b, 1.4 * b, 1.4 * b]),
        fill=neck,
    )
    sx = rng.uniform(2.0, 2.6)
    draw.polygon(
        pose.poly(
            np.array([-0.55, 0.55, sx - 0.4, sx, sx, -sx, -sx, 0.4 - sx]) * a,
            np.array([1.2, 1.2, 1.45, 1.8, 4.0, 4.0, 1.8, 1.45]) * b,
        ),
        fill=_rgb(clothes),
    )
    ear_y = b * rng.uniform(-0.05, 0.1)
    for side in (-1, 1):
        draw.polygon(pose.ellipse(side * a * 0.96, ear_y, a * 0.13, b * 0.22), fill=_rgb(skin, 0.9))

    # Head: a superellipse with a tapered jaw, then lighter insets towards the light for volume.
    t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    p = 2.0 / rng.uniform(2.0, 2.6)
    u = np.sign(np.cos(t)) * np.abs(np.cos(t)) ** p
    v = np.sign(np.sin(t)) * np.abs(np.sin(t)) ** p
    u = u * (1 - rng.uniform(0.1, 0.35) * np.maximum(v, 0) ** 2)
    draw.polygon(pose.poly(u * a, v * b), fill=_rgb(skin))
    light_dx = rng.uniform(-0.12, 0.12) * a
    for k, scale in enumerate((0.85, 0.68), start=1):
        draw.polygon(
            pose.poly(u * a * scale + light_dx * k, v * b * scale - 0.05 * b * k),
            fill=_rgb(skin, 1 + 0.025 * k),
        )
    if rng.random() < 0.3:
        blush = _rgb(skin * np.array([1.0, 0.9, 0.9]) + np.array([8.0, 0.0, 0.0]))
        for side in (-1, 1):
            draw.polygon(pose.ellipse(side * 0.5 * a, 0.25 * b, 0.16 * a, 0.1 * b), fill=blush)

    if hair_style != 0:
        # Cap: outer arc over the crown down to the temples, back along a curved hairline.
        down = rng.uniform(0.0, 0.35)
        t = np.linspace(math.pi - down, 2 * math.pi + down, 40)
        ox, oy = a * 1.07 * np.cos(t), -0.02 * b + b * 1.08 * np.sin(t)
        hx = np.linspace(0.95, -0.95, 20) * a
        hy = b * (rng.uniform(-0.75, -0.52) + rng.uniform(0.05, 0.3) * (hx / a) ** 2)
        draw.polygon(pose.poly(np.r_[ox, hx], np.r_[oy, hy]), fill=_rgb(hair))

    boxes: dict[str, Box] = {}
    ey = b * rng.uniform(-0.16, -0.06)
    ew = a * rng.uniform(0.13, 0.17)
    eh = ew * rng.uniform(0.38, 0.52)
    gaze = rng.uniform(-1, 1)
    brow = hair * 0.6 + skin * 0.15
    for name, side in (("left_eye", -1), ("right_eye", 1)):
        ex = side * a * rng.uniform(0.36, 0.42) + yaw * a
        # The eye on the far side of a turned head looks narrower.
        w = ew * (1 - 0.8 * max(0.0, side * -yaw))
        _draw_eye(draw, pose, rng, ex, ey, w, eh, skin, iris, brow, gaze, size)
        boxes[name] = pose.box(ex - w * 1.35, ey - eh * 1.9, ex + w * 1.35, ey + eh * 1.8, size)

    nx, ny = yaw * a * 1.3, b * rng.uniform(0.12, 0.2)
    nw, nl = a * rng.uniform(0.1, 0.14), b * rng.uniform(0.22, 0.3)
    shade = -1.0 if light_dx > 0 else 1.0
    draw.polygon(
        pose.poly(
            [
                nx + shade * nw * 0.3,
                nx + shade * nw * 0.45,
                nx + shade * nw * 0.75,
                nx + shade * nw * 0.5,
            ],
            [ny - nl * 0.6, ny - nl * 0.6, ny + nl * 0.15, ny + nl * 0.15],
        ),
        fill=_rgb(skin, 0.88),
    )
    for side in (-1, 1):
        draw.polygon(
            pose.ellipse(nx + side * nw * 0.72, ny + nl * 0.3, nw * 0.35, nl * 0.14),
            fill=_rgb(skin, 0.9),
        )
    draw.polygon(pose.ellipse(nx, ny + nl * 0.25, nw * 0.55, nl * 0.18), fill=_rgb(skin, 1.04))
    for side in (-1, 1):
        draw.polygon(
            pose.ellipse(nx + side * nw * 0.35, ny + nl * 0.42, nw * 0.2, nl * 0.06),
            fill=_rgb(skin, 0.45),
        )
    boxes["nose"] = pose.box(nx - nw * 1.3, ny - nl * 0.6, nx + nw * 1.3, ny + nl * 0.62, size)

    mx, my = yaw * a, b * rng.uniform(0.45, 0.55)
    mw = a * rng.uniform(0.24, 0.32)
    mh = mw * rng.uniform(0.25, 0.4)
    lip = skin * np.array([0.85, 0.6, 0.6]) + np.array([30.0, 0.0, 8.0])
    draw.polygon(pose.ellipse(mx, my, mw, mh * 0.8, math.pi, 2 * math.pi), fill=_rgb(lip))
    draw.polygon(pose.ellipse(mx, my, mw * 0.85, mh * 1.1, 0, math.pi), fill=_rgb(lip, 1.08))
    if rng.random() < 0.2:
        draw.polygon(pose.ellipse(mx, my, mw * 0.7, mh * 0.5), fill=_rgb(lip, 0.3))
        draw.polygon(
            pose.poly(
                [mx - mw * 0.5, mx + mw * 0.5, mx + mw * 0.5, mx - mw * 0.5],
                [my - mh * 0.4, my - mh * 0.4, my - mh * 0.1, my - mh * 0.1],
            ),
            fill=(238, 236, 228),
        )
    smile = rng.uniform(-0.3, 0.6)
    lx = np.linspace(-mw, mw, 9)
    draw.line(
        pose.poly(lx, my + smile * mh * (1 - (lx / mw) ** 2)),
        fill=_rgb(lip, 0.45),
        width=max(1, round(mh * 0.15)),
    )
    boxes["mouth"] = pose.box(mx - mw * 1.3, my - mh * 1.8, mx + mw * 1.3, my + mh * 2.0, size)
    return img, boxes


# Noise strengths (grey levels); a handful of levels lets each have a ready-made pool.
_NOISE_SIGMAS = (1.0, 1.6, 2.2, 2.8, 3.4, 4.0)
# Pools take 9x an image's bytes per worker; above this, fresh noise is the better trade.
_NOISE_POOL_MAX = 4 << 20


def _noise_lut(level: int) -> np.ndarray:
    quantiles = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])
    return np.clip(np.rint(128 + quantiles * _NOISE_SIGMAS[level]), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=len(_NOISE_SIGMAS))
def _noise_pool(nbytes: int, level: int) -> bytes:
    uniform = np.random.default_rng(_NOISE_POOL_SEED).bytes(nbytes + nbytes // 2)
    return _noise_lut(level)[np.frombuffer(uniform, np.uint8)].tobytes()


def _noise(rng: np.random.Generator, full: int, nbytes: int) -> memoryview | bytes:
    """nbytes of Gaussian sensor noise stored as 128 + n, for an image of `full` bytes."""
    offset = int(rng.integers(0, full // 2 + 1))
    level = int(rng.integers(len(_NOISE_SIGMAS)))
    if full > _NOISE_POOL_MAX:
        return _noise_lut(level)[rng.integers(0, 256, nbytes, dtype=np.uint8)].tobytes()
    # Fresh random bytes per image cost as much as the drawing; a per-process pool read at a
    # seeded random offset is as deterministic and just as unstructured to look at.
    return memoryview(_noise_pool(full, level))[offset : offset + nbytes]


def _finish(img: Image.Image, rng: np.random.Generator, region: Box | None = None) -> Image.Image:
    """Camera look (softness, coloured lighting, sensor noise), on the whole image or a region."""
    full = img.size[0] * img.size[1] * 3
    part = img if region is None else img.crop(region)
    w, h = part.size
    half = part.reduce(2)  # halving then bilinear upscaling is a 2-px blur at a fifth of its cost
    phi = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0.1, 0.35)
    gx, gy = np.meshgrid(np.linspace(-1, 1, 3), np.linspace(-1, 1, 3))
    along = (gx * math.cos(phi) + gy * math.sin(phi)) / math.sqrt(2)
    light = 1 - strength * (0.5 - 0.5 * along)
    tint = 1 - rng.uniform(0, 0.1, 3) - np.abs(rng.normal(0, 0.04, (3, 3, 3)))
    gain = np.clip(np.rint(255 * light[..., None] * tint), 0, 255).astype(np.uint8)
    half = ImageChops.multiply(
        half, Image.fromarray(gain).resize(half.size, Image.Resampling.BILINEAR)
    )
    part = half.resize((w, h), Image.Resampling.BILINEAR)

    noise = Image.frombuffer("RGB", (w, h), _noise(rng, full, w * h * 3), "raw", "RGB", 0, 1)
    part = ImageChops.add(part, noise, 1.0, -128)
    if region is None:
        return part
    img.paste(part, region[:2])
    return img


def _render(
    rng: np.random.Generator, size: int, regions: str | None = None
) -> tuple[Image.Image, dict[str, Box]]:
    """Draw and finish a face; with region flags, finish only what a donor lends (faster)."""
    img, boxes = _draw_face(rng, size)
    if regions is None:
        return _finish(img, rng), boxes
    picked = [boxes[r] for r, flag in zip(REGIONS, regions, strict=True) if flag == "1"]
    # Cover make_fake's crop jitter (<= 6% of a box) and keep even edges for reduce(2).
    pad = 2 + max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in picked) // 10
    x0 = max(0, min(b[0] for b in picked) - pad) // 2 * 2
    y0 = max(0, min(b[1] for b in picked) - pad) // 2 * 2
    x1 = min(size, max(b[2] for b in picked) + pad)
    y1 = min(size, max(b[3] for b in picked) + pad)
    return _finish(img, rng, (x0, y0, x1, y1)), boxes


def render_face(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, Box]]:
    """Draw one face: uint8 HxWx3 image and half-open (x0, y0, x1, y1) boxes per region."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    img, boxes = _render(rng, size)
    return np.array(img), boxes


# --------------------------------------------------------------------------- fakes


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _mask(level: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Blend weight of the donor patch inside an h x w box (1 = donor)."""
    if level == "easy":
        return np.ones((h, w, 1), np.float32)
    yy = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xx = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    if level == "mid":
        ramp = max(1.0, rng.uniform(0.06, 0.15) * min(h, w))
        edge = np.minimum(np.minimum(xx, w - xx), np.minimum(yy, h - yy))
        return _smoothstep(edge / ramp)[..., None].astype(np.float32)
    # hard: a soft ellipse inscribed in the box; the feature sits well inside it.
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    return _smoothstep((1 - r) / rng.uniform(0.18, 0.3))[..., None].astype(np.float32)


def make_fake(
    base: np.ndarray,
    base_boxes: dict[str, Box],
    donor: np.ndarray,
    donor_boxes: dict[str, Box],
    flags: str,
    level: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Paste the flagged regions (flags: 4 digits, REGIONS order) of donor into a copy of base."""
    if len(flags) != len(REGIONS) or set(flags) - {"0", "1"} or "1" not in flags:
        raise ValueError(f"flags must be 4 digits of 0/1 with at least one 1, got {flags!r}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    out = np.array(base, dtype=np.uint8, copy=True)
    dh, dw = donor.shape[:2]
    for region, flag in zip(REGIONS, flags, strict=True):
        if flag != "1":
            continue
        x0, y0, x1, y1 = base_boxes[region]
        w, h = x1 - x0, y1 - y0
        # Jitter the donor crop a little so a patch is never a pixel-aligned copy of a box.
        dx0, dy0, dx1, dy1 = donor_boxes[region]
        jx, jy = (rng.uniform(-0.06, 0.06, 2) * (dx1 - dx0, dy1 - dy0)).round().astype(int)
        dx0, dx1 = int(np.clip(dx0 + jx, 0, dw - 2)), int(np.clip(dx1 + jx, 2, dw))
        dy0, dy1 = int(np.clip(dy0 + jy, 0, dh - 2)), int(np.clip(dy1 + jy, 2, dh))
        dx1, dy1 = max(dx1, dx0 + 2), max(dy1, dy0 + 2)
        crop = Image.fromarray(np.ascontiguousarray(donor[dy0:dy1, dx0:dx1]))
        patch = np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
        dst = out[y0:y1, x0:x1].astype(np.float32)
        if level == "mid":
            # Halfway to the base colour: visibly off, but not a pasted sticker.
            shift = dst.mean(axis=(0, 1)) - patch.mean(axis=(0, 1))
            patch = patch + rng.uniform(0.3, 0.6) * shift
        elif level == "hard":
            pm, ps = patch.mean(axis=(0, 1)), patch.std(axis=(0, 1))
            bm, bs = dst.mean(axis=(0, 1)), dst.std(axis=(0, 1))
            patch = (patch - pm) * np.clip(bs / np.maximum(ps, 1e-3), 0.5, 2.0) + bm
        mask = _mask(level, h, w, rng)
        blended = mask * patch + (1 - mask) * dst
        out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- corpus


def _level(seed: int, i: int) -> str:
    order = np.random.default_rng([seed, _KIND_LEVEL, i // 4]).permutation(4)
    return _LEVEL_CYCLE[int(order[i % 4])]


def _fake_rng_and_name(seed: int, i: int) -> tuple[np.random.Generator, str, str, str]:
    """The fake's own stream (flags already drawn from it), file name, flags and level."""
    rng = np.random.default_rng([seed, _KIND_FAKE, i])
    flags = format(int(rng.integers(1, 16)), "04b")
    level = _level(seed, i)
    return rng, f"{level}_{i + 1}_{flags}.jpg", flags, level


def _real_name(i: int) -> str:
    return f"real_{i + 1:05d}.jpg"


def _name(sub: str, seed: int, i: int) -> str:
    return _real_name(i) if sub == REAL_DIR else _fake_rng_and_name(seed, i)[1]


def _write_atomic(path: Path, data: bytes) -> None:
    # Same folder so os.replace is a rename; the temp name never ends in .jpg, so a killed run
    # leaves nothing a reader of *.jpg could pick up half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _write_chunk(task: tuple[str, int, int, int, int, int]) -> dict[str, int]:
    """Render and write images [start, stop) of one kind; returns counts per level."""
    out, seed, size, kind, start, stop = task
    counts = dict.fromkeys(("real", *LEVELS), 0)
    if kind == _KIND_REAL:
        folder = Path(out, REAL_DIR)
        for i in range(start, stop):
            img, _ = _render(np.random.default_rng([seed, _KIND_REAL, i]), size)
            _write_atomic(folder / _real_name(i), _jpeg(img))
            counts["real"] += 1
        return counts
    folder = Path(out, FAKE_DIR)
    for i in range(start, stop):
        rng, name, flags, level = _fake_rng_and_name(seed, i)
        base, base_boxes = _render(rng, size)
        donor, donor_boxes = _render(rng, size, flags)
        fake = make_fake(
            np.asarray(base), base_boxes, np.asarray(donor), donor_boxes, flags, level, rng
        )
        _write_atomic(folder / name, _jpeg(Image.fromarray(fake)))
        counts[level] += 1
    return counts


def _tasks(
    out: str, seed: int, size: int, n_real: int, n_fake: int, chunk: int
) -> Iterator[tuple[str, int, int, int, int, int]]:
    # Interleave kinds so the slower fakes are spread over all workers.
    for start in range(0, max(n_real, n_fake), chunk):
        if start < n_real:
            yield (out, seed, size, _KIND_REAL, start, min(start + chunk, n_real))
        if start < n_fake:
            yield (out, seed, size, _KIND_FAKE, start, min(start + chunk, n_fake))


def _prepare(out: Path, seed: int, n_real: int, n_fake: int) -> None:
    """Drop stale temp files; refuse a folder holding images this run would not write."""
    foreign: list[str] = []
    for sub, n in ((REAL_DIR, n_real), (FAKE_DIR, n_fake)):
        folder = out / sub
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX):
                Path(entry.path).unlink(missing_ok=True)
                continue
            if not entry.name.endswith(".jpg"):
                continue
            # Rerunning the same command may overwrite its own images (same bytes); anything
            # else would silently mix two corpora.
            match = _INDEX.fullmatch(entry.name)
            i = int(match.group(1)) - 1 if match else -1
            if not 0 <= i < n or entry.name != _name(sub, seed, i):
                foreign.append(entry.path)
    if foreign:
        raise FakefaceError(
            f"{out} already holds {len(foreign)} image(s) this run would not write "
            f"(e.g. {foreign[0]}); use an empty --out folder"
        )


def write_corpus(
    out_path: str | Path,
    n_real: int,
    n_fake: int,
    size: int = 600,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, int | float]:
    """Write n_real + n_fake JPEGs under out_path; returns counts per kind and level."""
    if n_real < 0 or n_fake < 0:
        raise ValueError("n_real and n_fake must be >= 0")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError("workers must be >= 1")
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    _prepare(out, seed, n_real, n_fake)
    if n_real:
        (out / REAL_DIR).mkdir(exist_ok=True)
    if n_fake:
        (out / FAKE_DIR).mkdir(exist_ok=True)

    total = n_real + n_fake
    chunk = max(1, min(_MAX_CHUNK, math.ceil(total / (workers * 8))))
    tasks = _tasks(str(out), seed, size, n_real, n_fake, chunk)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    if workers == 1 or total <= chunk:  # one chunk gains nothing from a pool
        for part in map(_write_chunk, tasks):
            counts.update(part)
    else:
        # Look the worker up through the package so it pickles as fakeface.synth._write_chunk even
        # when this file runs as __main__; forkserver avoids forking a threaded parent (Spark, TF).
        worker = importlib.import_module("fakeface.synth")._write_chunk
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(min(workers, math.ceil(total / chunk))) as pool:
            for part in pool.imap(worker, tasks):
                counts.update(part)
    seconds = time.perf_counter() - started
    return {
        "real": counts["real"],
        "fake": counts["easy"] + counts["mid"] + counts["hard"],
        **{level: counts[level] for level in LEVELS},
        "total": total,
        "seconds": seconds,
    }


# --------------------------------------------------------------------------- CLI


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: write a synthetic corpus and print one summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m fakeface.synth",
        usage="%(prog)s --out DIR --n-real N --n-fake N [--size PX] [--seed S] [--workers W]",
        description="Write a synthetic real/fake face corpus in the real data set's layout.",
    )
    count, side, positive = _int_at_least(0), _int_at_least(MIN_SIZE), _int_at_least(1)
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder")
    parser.add_argument("--n-real", metavar="N", type=count, required=True, help="real faces")
    parser.add_argument("--n-fake", metavar="N", type=count, required=True, help="fakes")
    parser.add_argument("--size", metavar="PX", type=side, default=600, help="image side")
    parser.add_argument("--seed", metavar="S", type=count, default=0, help="corpus seed")
    parser.add_argument("--workers", metavar="W", type=positive, help="default: all cores")
    args = parser.parse_args(argv)
    try:
        counts = write_corpus(
            args.out, args.n_real, args.n_fake, args.size, args.seed, args.workers
        )
    except FakefaceError as exc:
        print(f"synth: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"synth: error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    seconds = counts["seconds"]
    rate = counts["total"] / seconds if seconds > 0 else 0.0
    print(
        f"synth: wrote {counts['total']} images ({counts['real']} real, {counts['fake']} fake: "
        f"{counts['easy']} easy, {counts['mid']} mid, {counts['hard']} hard) to {args.out} "
        f"in {seconds:.2f} s ({rate:.1f} images/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
