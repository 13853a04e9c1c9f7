"""Ingest under bad input and faults: every file gets one row with a clear answer, none is lost.

Bad input: every Pillow mode through every format that can save it, odd JPEGs (CMYK,
progressive, arithmetic-coded), 1x1 and header-only 40000x40000 images, EXIF orientations,
wrong extensions, empty, truncated and random files, awkward names, symlinks, FIFOs,
sockets, devices and folders named like images. Faults: a failing task, a job killed
mid-write, two runs of one date at once, a commit cut between its two renames.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from fakeface import storage
from fakeface.decode import decode_image, pixels_from_bytes
from fakeface.ingest import VANISHED, run_ingest, scan_local_images
from tests.conftest import PROJECT_ROOT, encode, gradient_image

pytestmark = pytest.mark.reliability

LIMIT = 10_000_000
SIZE = 32  # the `cfg` fixture's ingest.image_size
KINDS = {
    "empty",
    "truncated",
    "not_an_image",
    "unsupported_format",
    "too_large",
    "corrupt",
    "unreadable",
}
FORMATS = {"PNG": "png", "TIFF": "tif", "BMP": "bmp", "GIF": "gif", "WEBP": "webp", "JPEG": "jpg"}
ALL_EXTENSIONS = [".jpg", ".jpeg", ".png", ".tif", ".bmp", ".gif", ".webp"]
METACHARACTERS = "$;'\"`&|*?[]#%"


# --------------------------------------------------------------------------- helpers


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def read_partitions(output: Path):
    # pyarrow skips `_staging`, `_trash`, ... (names starting with '_' or '.').
    return pads.dataset(str(output), format="parquet", partitioning="hive").to_table().to_pandas()


def row_path(path: Path) -> str:
    """The `path` column of a local file, as ingest writes it."""
    return "file:" + os.path.abspath(path)


def assert_contract(result, size: int) -> None:
    """What decode_image promises for any input whatsoever."""
    assert result.status in ("ok", "error")
    if result.status == "ok":
        assert result.error is None
        assert result.image is not None and len(result.image) == size * size * 3
        assert result.orig_width >= 1 and result.orig_height >= 1 and result.format
    else:
        assert result.image is None
        assert isinstance(result.error, str)
        kind, _, message = result.error.partition(": ")
        assert kind in KINDS, result.error
        assert message.strip(), result.error


def mode_image(mode: str) -> Image.Image:
    """A 48x40 gradient in `mode`, with a real alpha ramp where the mode has alpha."""
    rgb = Image.fromarray(gradient_image(48, 40))
    grey = np.asarray(rgb.convert("L"))
    if mode.startswith("I;16"):
        # Pillow's convert() clips at 255 for these: build the 16-bit samples directly.
        dtype = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}[mode]
        data = (grey.astype(np.uint16) * 257).astype(dtype).tobytes()
        return Image.frombuffer(mode, rgb.size, data, "raw", mode, 0, 1)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 100)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255.0)
    if "A" in mode or mode.endswith("a"):
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(np.tile(np.linspace(40, 255, 48).astype(np.uint8), (40, 1))))
        return rgba.convert(mode)
    return rgb.convert(mode)


def savable_pairs() -> list[tuple[str, str]]:
    """(mode, format) for every Pillow mode each of our formats can save."""
    pairs = []
    for mode in sorted(Image.MODES):
        try:
            image = mode_image(mode)
        except (ValueError, OSError):
            continue
        for fmt in FORMATS:
            try:
                save(image, fmt)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            pairs.append((mode, fmt))
    return pairs


def expected_pixels(data: bytes, size: int) -> np.ndarray:
    """An independent reading of what an image file holds, as size x size RGB."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(image, np.float64)
        if mode.startswith("I;16"):
            grey = arr / 257.0
        else:  # no fixed range: the documented rule is min(0, low) .. max(1, high)
            low, top = min(arr.min(), 0.0), max(arr.max(), 1.0)
            grey = (arr - low) / max(top - low, 1e-9) * 255.0
        rgb = np.repeat(np.clip(grey + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    elif mode == "LAB":
        rgb = gradient_image(48, 40)  # the colours the LAB file was made from
    elif "A" in mode or mode.endswith("a") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), np.float64)
        alpha = rgba[..., 3:] / 255.0
        rgb = (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    else:
        rgb = np.asarray(image.convert("RGB"))
    resized = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.int16)


def pixels_of(image: bytes | None, size: int = SIZE) -> np.ndarray:
    assert image is not None
    return pixels_from_bytes(image, size).astype(np.int16)


def one_pixel(fmt: str) -> bytes:
    return save(Image.new("RGB", (1, 1), (10, 200, 30)), fmt)


def png_bomb() -> bytes:
    """A valid PNG header claiming 40000 x 40000 pixels, and no pixel data to speak of."""
    data = bytearray(save(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = (40000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def jpeg_bomb() -> bytes:
    """A real 8x8 baseline JPEG whose SOF0 says 40000 x 40000."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 40000, 40000)  # height, width
    return bytes(data)


# Quadrant colours of the upright test picture: top-left red, top-right green,
# bottom-left blue, bottom-right white.
QUADRANTS = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 255)}
# EXIF orientation -> the transpose that shows the stored pixels upright (and its inverse).
ORIENTATION = {
    1: (None, None),
    2: (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_LEFT_RIGHT),
    3: (Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_180),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_TOP_BOTTOM),
    5: (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSPOSE),
    6: (Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_90),
    7: (Image.Transpose.TRANSVERSE, Image.Transpose.TRANSVERSE),
    8: (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270),
}


def upright_picture() -> Image.Image:
    arr = np.zeros((32, 64, 3), np.uint8)
    for (row, col), colour in QUADRANTS.items():
        arr[row * 16 : (row + 1) * 16, col * 32 : (col + 1) * 32] = colour
    return Image.fromarray(arr)


def oriented(orientation: int, fmt: str = "JPEG") -> bytes:
    """The upright picture stored as a camera would: rotated pixels + an EXIF orientation."""
    stored = upright_picture()
    inverse = ORIENTATION[orientation][1]
    if inverse is not None:
        stored = stored.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    params = {"quality": 95} if fmt == "JPEG" else {}
    return save(stored, fmt, exif=exif, **params)


def assert_upright(pixels: np.ndarray) -> None:
    half = pixels.shape[0] // 2
    for (row, col), colour in QUADRANTS.items():
        centre = pixels[row * half + half // 2, col * half + half // 2]
        assert np.abs(centre - np.array(colour)).max() < 40, ((row, col), centre, colour)


# --- an arithmetic-coded JPEG (SOF9), written by hand: Pillow cannot write one ---------------

# ITU-T T.81 Table D.3, the QM coder's probability estimation state machine.
QE = [
    0x5A1D, 0x2586, 0x1114, 0x080B, 0x03D8, 0x01DA, 0x00E5, 0x006F, 0x0036, 0x001A, 0x000D,
    0x0006, 0x0003, 0x0001, 0x5A7F, 0x3F25, 0x2CF2, 0x207C, 0x17B9, 0x1182, 0x0CEF, 0x09A1,
    0x072F, 0x055C, 0x0406, 0x0303, 0x0240, 0x01B1, 0x0144, 0x00F5, 0x00B7, 0x008A, 0x0068,
    0x004E, 0x003B, 0x002C, 0x5AE1, 0x484C, 0x3A0D, 0x2EF1, 0x261F, 0x1F33, 0x19A8, 0x1518,
    0x1177, 0x0E74, 0x0BFB, 0x09F8, 0x0861, 0x0706, 0x05CD, 0x04DE, 0x040F, 0x0363, 0x02D4,
    0x025C, 0x01F8, 0x01A4, 0x0160, 0x0125, 0x00F6, 0x00CB, 0x00AB, 0x008F, 0x5B12, 0x4D04,
    0x412C, 0x37D8, 0x2FE8, 0x293C, 0x2379, 0x1EDF, 0x1AA9, 0x174E, 0x1424, 0x119C, 0x0F6B,
    0x0D51, 0x0BB6, 0x0A40, 0x5832, 0x4D1C, 0x438E, 0x3BDD, 0x34EE, 0x2EAE, 0x299A, 0x2516,
    0x5570, 0x4CA9, 0x44D9, 0x3E22, 0x3824, 0x32B4, 0x2E17, 0x56A8, 0x4F46, 0x47E5, 0x41CF,
    0x3C3D, 0x375E, 0x5231, 0x4C0F, 0x4639, 0x415E, 0x5627, 0x50E7, 0x4B85, 0x5597, 0x504F,
    0x5A10, 0x5522, 0x59EB,
]  # fmt: skip
NEXT_LPS = [
    1, 14, 16, 18, 20, 23, 25, 28, 30, 33, 35, 9, 10, 12, 15, 36, 38, 39, 40, 42, 43, 45, 46,
    48, 49, 51, 52, 54, 56, 57, 59, 60, 62, 63, 32, 33, 37, 64, 65, 67, 68, 69, 70, 72, 73, 74,
    75, 77, 78, 79, 48, 50, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 61, 61, 65, 80, 81, 82, 83,
    84, 86, 87, 87, 72, 72, 74, 74, 75, 77, 77, 80, 88, 89, 90, 91, 92, 93, 86, 88, 95, 96, 97,
    99, 99, 93, 95, 101, 102, 103, 104, 99, 105, 106, 107, 103, 105, 108, 109, 110, 111, 110,
    112, 112,
]  # fmt: skip
NEXT_MPS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 9, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 32, 65, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 48, 81, 82, 83, 84, 85, 86, 87, 71, 89, 90, 91, 92, 93, 94,
    86, 96, 97, 98, 99, 100, 93, 102, 103, 104, 99, 106, 107, 103, 109, 107, 111, 109, 111,
]  # fmt: skip
SWITCH_MPS = {0, 14, 36, 64, 80, 88, 95, 105, 110, 112}


class QMEncoder:
    """The binary arithmetic coder of T.81 Annex D, as libjpeg's jcarith.c writes it."""

    def __init__(self) -> None:
        self.c, self.a, self.sc, self.zc, self.ct, self.buffer = 0, 0x10000, 0, 0, 11, -1
        self.out = bytearray()

    def _pending_zeros(self) -> None:
        self.out += b"\x00" * self.zc
        self.zc = 0

    def _byte_out(self, temp: int) -> None:
        if temp > 0xFF:  # carry into the stacked 0xFF bytes
            if self.buffer >= 0:
                self._pending_zeros()
                self.out.append(self.buffer + 1)
                if self.buffer + 1 == 0xFF:
                    self.out.append(0)
            self.zc += self.sc
            self.sc = 0
            self.buffer = temp & 0xFF
        elif temp == 0xFF:
            self.sc += 1
        else:
            if self.buffer == 0:
                self.zc += 1
            elif self.buffer >= 0:
                self._pending_zeros()
                self.out.append(self.buffer)
            if self.sc:
                self._pending_zeros()
                self.out += b"\xff\x00" * self.sc
                self.sc = 0
            self.buffer = temp & 0xFF

    def encode(self, stats: bytearray, index: int, bit: int) -> None:
        state = stats[index]
        qe = QE[state & 0x7F]
        self.a -= qe
        if bit != state >> 7:  # the less probable symbol
            if self.a >= qe:
                self.c += self.a
                self.a = qe
            switch = 0x80 if (state & 0x7F) in SWITCH_MPS else 0
            stats[index] = ((state & 0x80) ^ switch) | NEXT_LPS[state & 0x7F]
        else:
            if self.a >= 0x8000:
                return
            if self.a < qe:
                self.c += self.a
                self.a = qe
            stats[index] = (state & 0x80) | NEXT_MPS[state & 0x7F]
        while self.a < 0x8000:  # renormalise
            self.a <<= 1
            self.c <<= 1
            self.ct -= 1
            if self.ct == 0:
                self._byte_out(self.c >> 19)
                self.c &= 0x7FFFF
                self.ct += 8

    def finish(self) -> bytes:
        temp = (self.a - 1 + self.c) & 0xFFFF0000
        self.c = temp + 0x8000 if temp < self.c else temp
        self.c <<= self.ct
        if self.c & 0xF8000000:
            if self.buffer >= 0:
                self._pending_zeros()
                self.out.append(self.buffer + 1)
                if self.buffer + 1 == 0xFF:
                    self.out.append(0)
            self.zc += self.sc
            self.sc = 0
        else:
            if self.buffer == 0:
                self.zc += 1
            elif self.buffer >= 0:
                self._pending_zeros()
                self.out.append(self.buffer)
            if self.sc:
                self._pending_zeros()
                self.out += b"\xff\x00" * self.sc
                self.sc = 0
        if self.c & 0x7FFF800:
            self._pending_zeros()
            for shift, mask in ((19, 0x7FFF800), (11, 0x7F800)):
                if self.c & mask:
                    byte = (self.c >> shift) & 0xFF
                    self.out.append(byte)
                    if byte == 0xFF:
                        self.out.append(0)
        return bytes(self.out)


def arithmetic_jpeg(blocks: list[tuple[int, int, int]]) -> bytes:
    """A 3-component SOF9 JPEG of flat 8x8 blocks side by side, one (Y, Cb, Cr) per block.

    All quantisers are 8, so a DC coefficient d decodes to the flat level 128 + d; AC
    coefficients are all zero. DC differences are coded per T.81 F.1.4.1 with the
    default conditioning (L=0, U=1), each component with its own statistics.
    """
    coder = QMEncoder()
    dc_stats = [bytearray(64) for _ in range(3)]
    ac_stats = [bytearray(256) for _ in range(3)]
    last, context = [0, 0, 0], [0, 0, 0]
    for levels in blocks:
        for comp, level in enumerate(levels):
            stats, s0 = dc_stats[comp], context[comp]
            diff = (level - 128) - last[comp]
            if diff == 0:
                coder.encode(stats, s0, 0)
                context[comp] = 0
            else:
                last[comp] = level - 128
                coder.encode(stats, s0, 1)
                coder.encode(stats, s0 + 1, 0 if diff > 0 else 1)  # sign
                index, context[comp] = (s0 + 2, 4) if diff > 0 else (s0 + 3, 8)
                magnitude, top = abs(diff) - 1, 0
                if magnitude:
                    coder.encode(stats, index, 1)
                    top, index, rest = 1, 20, magnitude >> 1
                    while rest:
                        coder.encode(stats, index, 1)
                        top, index, rest = top << 1, index + 1, rest >> 1
                coder.encode(stats, index, 0)
                if top > 1:  # a "large" difference (U=1)
                    context[comp] += 8
                index += 14
                top >>= 1
                while top:
                    coder.encode(stats, index, 1 if magnitude & top else 0)
                    top >>= 1
            coder.encode(ac_stats[comp], 0, 1)  # end of block at k=1
    scan = coder.finish()

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">HH", marker, len(body) + 2) + body

    return (
        b"\xff\xd8"
        + segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xFFDB, b"\x00" + bytes([8] * 64))
        + segment(0xFFC9, struct.pack(">BHHB", 8, 8, 8 * len(blocks), 3) + bytes.fromhex(
            "011100021100031100"))
        # Components 1, 2, 3 with conditioning tables 0/0, 1/1, 2/2; Ss=0, Se=63, Ah=Al=0.
        + segment(0xFFDA, bytes.fromhex("03010002110322003f00"))
        + scan
        + b"\xff\xd9"
    )  # fmt: skip


ARITHMETIC_BLOCKS = [(150, 100, 180), (90, 160, 110), (200, 128, 128)]


def arithmetic_expected(size: int) -> np.ndarray:
    """What the arithmetic JPEG shows: its flat YCbCr blocks, converted and resized."""
    strip = np.concatenate(
        [
            np.asarray(Image.new("YCbCr", (8, 8), levels).convert("RGB"))
            for levels in ARITHMETIC_BLOCKS
        ],
        axis=1,
    )
    return np.asarray(
        Image.fromarray(strip).resize((size, size), Image.Resampling.BILINEAR), np.int16
    )


# --------------------------------------------------------------------------- decode_image


@pytest.mark.parametrize(("mode", "fmt"), savable_pairs())
def test_every_savable_mode_decodes_to_what_the_file_holds(mode: str, fmt: str) -> None:
    data = save(mode_image(mode), fmt)
    result = decode_image(data, SIZE, LIMIT)
    assert result.status == "ok", result.error
    assert_contract(result, SIZE)
    assert (result.orig_width, result.orig_height, result.format) == (48, 40, fmt)
    diff = np.abs(pixels_of(result.image) - expected_pixels(data, SIZE)).mean()
    assert diff < 2.5, diff


def test_savable_pairs_cover_the_formats_and_modes() -> None:
    pairs = savable_pairs()
    assert {fmt for _, fmt in pairs} == set(FORMATS)
    assert {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "F"} <= {
        mode for mode, _ in pairs
    }
    assert {"I;16", "I;16B"} <= {mode for mode, _ in pairs}


@pytest.mark.parametrize(
    "variant", ["cmyk", "cmyk_progressive", "progressive", "optimized", "subsampled_420"]
)
def test_awkward_jpegs_decode(variant: str) -> None:
    image = Image.fromarray(gradient_image(64, 48))
    params: dict[str, object] = {"quality": 92}
    if variant.startswith("cmyk"):
        image = image.convert("CMYK")  # Pillow writes Adobe (inverted) CMYK
    if "progressive" in variant:
        params["progressive"] = True
    if variant == "optimized":
        params["optimize"] = True
    if variant == "subsampled_420":
        params["subsampling"] = 2
    data = save(image, "JPEG", **params)
    result = decode_image(data, SIZE, LIMIT)
    assert result.status == "ok", result.error
    assert result.format == "JPEG"
    original = np.asarray(
        Image.fromarray(gradient_image(64, 48)).resize((SIZE, SIZE), Image.Resampling.BILINEAR),
        np.int16,
    )
    assert np.abs(pixels_of(result.image) - original).mean() < 4


def test_arithmetic_coded_jpeg_decodes_exactly() -> None:
    data = arithmetic_jpeg(ARITHMETIC_BLOCKS)
    assert b"\xff\xc9" in data and b"\xff\xc0" not in data and b"\xff\xc4" not in data
    # libjpeg-turbo in Pillow 13 decodes arithmetic coding: check it is really read, not
    # just tolerated, by the exact YCbCr levels of each block.
    ycc = Image.open(io.BytesIO(data))
    ycc.draft("YCbCr", ycc.size)
    levels = np.asarray(ycc)[4, 4::8]
    assert [tuple(int(v) for v in px) for px in levels] == ARITHMETIC_BLOCKS
    result = decode_image(data, SIZE, LIMIT)
    assert result.status == "ok", result.error
    assert (result.orig_width, result.orig_height, result.format) == (24, 8, "JPEG")
    assert np.abs(pixels_of(result.image) - arithmetic_expected(SIZE)).max() <= 3
    # Cut short, it is an error with a kind, like any other truncated JPEG.
    cut = decode_image(data[: len(data) - 12], SIZE, LIMIT)
    assert cut.status == "error" and cut.error_kind in {"truncated", "corrupt"}, cut.error


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_one_pixel_images(fmt: str) -> None:
    result = decode_image(one_pixel(fmt), SIZE, LIMIT)
    assert result.status == "ok", result.error
    assert (result.orig_width, result.orig_height) == (1, 1)
    pixels = pixels_of(result.image)
    assert (pixels.max(axis=(0, 1)) - pixels.min(axis=(0, 1))).max() == 0  # flat
    assert np.abs(pixels[0, 0] - np.array([10, 200, 30])).max() <= 8


@pytest.mark.parametrize("make", [png_bomb, jpeg_bomb], ids=["png", "jpeg"])
def test_header_only_giants_rejected_before_decoding(make, monkeypatch) -> None:
    loads = []
    original = ImageFile.ImageFile.load

    def spy(self):
        loads.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    started = time.monotonic()
    result = decode_image(make(), SIZE, 64_000_000)
    assert result.status == "error" and result.error_kind == "too_large", result.error
    assert "1600000000" in result.error
    assert "out of memory" not in result.error  # rejected from the header, not by a failure
    assert loads == []  # no pixel was decoded, so no 4.8 GB buffer was allocated
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_decodes_upright(orientation: int) -> None:
    for fmt in ("JPEG", "PNG"):
        result = decode_image(oriented(orientation, fmt), SIZE, LIMIT)
        assert result.status == "ok", result.error
        assert_upright(pixels_of(result.image))


def test_wrong_extension_is_irrelevant_to_decoding() -> None:
    # The name is not passed to the decoder at all: the bytes decide (format == PNG).
    result = decode_image(encode(gradient_image(), "PNG"), SIZE, LIMIT)
    assert result.status == "ok" and result.format == "PNG"


JPEG_SAMPLE = encode(gradient_image(40, 24), "JPEG", quality=85)
_SOS = JPEG_SAMPLE.index(b"\xff\xda")
JPEG_HEADER = JPEG_SAMPLE[: _SOS + 2 + int.from_bytes(JPEG_SAMPLE[_SOS + 2 : _SOS + 4], "big")]
TRUNCATION_SAMPLES = {
    "jpeg": JPEG_SAMPLE,
    "progressive": save(Image.fromarray(gradient_image(40, 24)), "JPEG", progressive=True),
    "arithmetic": arithmetic_jpeg(ARITHMETIC_BLOCKS),
    "png": encode(gradient_image(40, 24), "PNG"),
    "gif": save(Image.fromarray(gradient_image(40, 24)), "GIF"),
    "webp": save(Image.fromarray(gradient_image(40, 24)), "WEBP"),
    "tiff": save(Image.fromarray(gradient_image(40, 24)), "TIFF"),
    "bmp": save(Image.fromarray(gradient_image(40, 24)), "BMP"),
}
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(prefix=st.sampled_from([b"", b"\xff\xd8", JPEG_HEADER]), tail=st.binary(max_size=4096))
def test_random_bytes_behind_a_jpeg_header_never_raise(prefix: bytes, tail: bytes) -> None:
    assert_contract(decode_image(prefix + tail, 16, LIMIT), 16)


@PROPERTY
@given(name=st.sampled_from(sorted(TRUNCATION_SAMPLES)), cut=st.floats(0.0, 1.0))
def test_truncated_files_are_errors_or_exact(name: str, cut: float) -> None:
    data = TRUNCATION_SAMPLES[name]
    keep = min(int(len(data) * cut), len(data) - 1)
    result = decode_image(data[:keep], 16, LIMIT)
    assert_contract(result, 16)
    if keep == 0:
        assert result.error_kind == "empty"
    if result.status == "ok":
        # Only a cut in trailing metadata may still decode; then the pixels are all there.
        full = decode_image(data, 16, LIMIT)
        assert np.array_equal(pixels_of(result.image, 16), pixels_of(full.image, 16)), keep


# --------------------------------------------------------------------------- the listing


def test_scan_classifies_every_entry(tmp_path: Path) -> None:
    root, expected = build_odd_tree(tmp_path)
    listing = scan_local_images(str(root), ALL_EXTENSIONS, max_bytes=2**31 - 1)
    got = {p: "file" for p in listing.files}
    got.update({p: "empty" for p in listing.empty})
    got.update(dict(listing.problems))
    assert set(got) == set(expected)
    for path, want in expected.items():
        assert want in got[path], (path, got[path])
    assert len(listing.files) + len(listing.empty) + len(listing.problems) == len(expected)
    assert sorted(Path(p).name for p in listing.hidden) == [".dot.jpg", "_hidden_dir", "_under.png"]


def build_odd_tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Symlinks, special files, folders named like images, hidden names; -> (root, expected).

    `expected` maps each row path to 'file', 'empty' or a fragment of its error.
    """
    root = tmp_path / "odd"
    outside = tmp_path / "outside"
    good = encode(gradient_image(20, 20), "PNG")
    write(outside / "o.png", good)
    expected: dict[str, str] = {}

    def expect(path: Path, what: str) -> None:
        expected[row_path(path)] = what

    expect(write(root / "good.png", good), "file")
    expect(write(root / "empty.jpg", b""), "empty")
    expect(write(root / "x.jpg" / "inside.png", good), "file")  # a folder named like an image
    (root / "empty_folder.png").mkdir()  # a folder, not a file: no row
    write(root / "notes.txt", b"not named like an image")
    os.symlink(root / "good.png", root / "link_to_good.png")
    expect(root / "link_to_good.png", "file")
    os.symlink(outside / "o.png", root / "link_outside.jpg")
    expect(root / "link_outside.jpg", "file")
    os.symlink(outside, root / "linked_folder")  # followed: its image gets a row
    expect(root / "linked_folder" / "o.png", "file")
    os.symlink("missing.jpg", root / "dangling.jpg")
    expect(root / "dangling.jpg", "unreadable: dangling symlink (its target 'missing.jpg'")
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    os.symlink("self_loop.png", root / "self_loop.png")
    for name in ("loop_a.jpg", "loop_b.jpg", "self_loop.png"):
        expect(root / name, "unreadable: symlink loop")
    os.symlink("..", root / "x.jpg" / "up")  # a folder loop: not followed, no row, no hang
    os.symlink(".", root / "here.jpg")  # a folder loop named like an image: same
    os.mkfifo(root / "fifo.jpg")
    expect(root / "fifo.jpg", "unreadable: not a regular file (FIFO)")
    os.symlink("fifo.jpg", root / "link_to_fifo.png")
    expect(root / "link_to_fifo.png", "unreadable: not a regular file (symlink to a FIFO)")
    with tempfile.TemporaryDirectory() as short:  # AF_UNIX paths are limited to ~108 bytes
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(os.path.join(short, "s"))
        sock.close()
        shutil.move(os.path.join(short, "s"), root / "socket.png")
    expect(root / "socket.png", "unreadable: not a regular file (socket)")
    try:
        os.mknod(root / "device.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
        expect(root / "device.jpg", "unreadable: not a regular file (character device)")
    except (PermissionError, OSError):
        pass  # no CAP_MKNOD here: the FIFO and the socket cover special files
    latin1 = os.fsencode(root) + b"/caf\xe9.jpg"
    with open(latin1, "wb") as handle:
        handle.write(good)
    expected["file:" + latin1.decode("utf-8", "backslashreplace")] = (
        "unreadable: the file name is not valid UTF-8"
    )
    # Names Spark ignores by convention: skipped (and counted), never rows.
    write(root / "_under.png", good)
    write(root / ".dot.jpg", good)
    write(root / "_hidden_dir" / "inside.png", good)
    return root, expected


# --------------------------------------------------------------------------- Spark, bad input


@pytest.fixture
def watchdog(spark):
    """Cancel Spark jobs still running after 240 s, so that a hang fails instead of blocking."""
    timer = threading.Timer(240, spark.sparkContext.cancelAllJobs)
    timer.start()
    yield
    timer.cancel()


def build_zoo(tmp_path: Path) -> tuple[Path, dict[str, tuple]]:
    """Every bad and awkward input at once; -> (root, {row path: expectation})."""
    root, odd = build_odd_tree(tmp_path)
    expected: dict[str, tuple] = {}
    for path, what in odd.items():
        if what == "file":
            expected[path] = ("ok", None)
        elif what == "empty":
            expected[path] = ("error", "empty: file is empty")
        else:
            expected[path] = ("error", what)

    def add(name: str, data: bytes, *expectation) -> None:
        expected[row_path(write(root / name, data))] = expectation

    for mode, fmt in savable_pairs():
        data = save(mode_image(mode), fmt)
        add(f"modes/{mode.replace(';', '_')}.{FORMATS[fmt]}", data, "ok", data)
    rgb = Image.fromarray(gradient_image(64, 48))
    for name, image, params in [
        ("cmyk.jpg", rgb.convert("CMYK"), {}),
        ("progressive.jpg", rgb, {"progressive": True}),
        ("cmyk_progressive.jpeg", rgb.convert("CMYK"), {"progressive": True}),
    ]:
        data = save(image, "JPEG", quality=92, **params)
        add(f"jpegs/{name}", data, "ok", data)
    add("jpegs/arithmetic.jpg", arithmetic_jpeg(ARITHMETIC_BLOCKS), "ok", "arithmetic")
    for fmt in ("PNG", "JPEG", "GIF"):
        data = one_pixel(fmt)
        add(f"tiny/one_pixel.{FORMATS[fmt]}", data, "ok", data)
    add("giants/header_only.png", png_bomb(), "error", "too_large")
    add("giants/header_only.jpg", jpeg_bomb(), "error", "too_large")
    for orientation in range(1, 9):
        add(f"exif/orientation_{orientation}.jpg", oriented(orientation), "ok", "upright")
    add("exif/orientation_6.png", oriented(6, "PNG"), "ok", "upright")
    png = encode(gradient_image(), "PNG")
    add("wrong/png_named.jpg", png, "ok", png, "PNG")
    add("wrong/jpeg_named.png", encode(gradient_image()), "ok", None, "JPEG")
    add("wrong/text.jpg", b"plain text, not an image", "error", "not_an_image")
    add("wrong/pdf.png", b"%PDF-1.7 not an image", "error", "unsupported_format")
    rng = np.random.default_rng(7)
    big = encode(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), "JPEG", quality=95)
    for i, fraction in enumerate(rng.uniform(0.05, 0.9, size=4)):
        add(f"truncated/cut_{i}.jpg", big[: int(len(big) * fraction)], "error", "truncated")
    add("random/noise.jpg", b"\xff\xd8" + rng.bytes(3000), "error", None)
    add("random/noise_after_header.jpg", JPEG_HEADER + rng.bytes(3000), "error", None)
    small = encode(gradient_image(24, 24), "PNG")
    add("names/" + "long_" + "x" * 241 + ".png", small, "ok", small)  # 250 bytes
    add("names/with spaces  and  more .png", small, "ok", small)
    add("names/accénts ünïcødé 日本.png", small, "ok", small)
    add("names/all " + METACHARACTERS + ".png", small, "ok", small)
    for i, char in enumerate(METACHARACTERS):
        add(f"names/meta_{i}_{char}.png", small, "ok", small)
    add("names/percent %20 %41.png", small, "ok", small)
    # Larger than the binaryFile limit the test sets (100 kB): refused before Spark reads it.
    add("giants/too_many_bytes.jpg", big + b"\x00" * 100_000, "error", "too_large")
    return root, expected


def test_zoo_every_file_one_row_with_a_clear_answer(
    spark, cfg, tmp_path: Path, watchdog, caplog
) -> None:
    root, expected = build_zoo(tmp_path)
    cfg.ingest.extensions = ALL_EXTENSIONS
    out = tmp_path / "out"
    spark.conf.set("spark.sql.sources.binaryFile.maxLength", "100000")
    try:
        with caplog.at_level(logging.WARNING, logger="fakeface.ingest"):
            summary = run_ingest(spark, cfg, str(root), str(out), "2026-03-01")
    finally:
        spark.conf.unset("spark.sql.sources.binaryFile.maxLength")
    df = read_partitions(out)
    assert not df.path.duplicated().any()
    assert set(df.path) == set(expected)
    assert len(df) == len(expected) == summary["files"]
    assert summary["hidden_skipped"] == 3
    assert "not read by Spark" not in caplog.text  # every regular file came through binaryFile
    for row in df.itertuples():
        status, detail, *rest = expected[row.path]
        assert row.status == status, (row.path, row.error)
        if status == "error":
            assert row.image is None and np.isnan(row.height)
            kind = row.error.split(":", 1)[0]
            assert kind in KINDS
            if detail is not None:
                # A cut JPEG is `truncated`, or `corrupt` when the cut lands mid-marker.
                also = {"truncated": "corrupt"}.get(detail, detail)
                assert row.error.startswith((detail, also)), (row.path, row.error)
            continue
        assert row.error is None and (row.height, row.width) == (SIZE, SIZE)
        pixels = pixels_of(row.image)
        if detail == "upright":
            assert_upright(pixels)
        elif detail == "arithmetic":
            assert np.abs(pixels - arithmetic_expected(SIZE)).max() <= 3
        elif isinstance(detail, bytes):
            assert np.abs(pixels - expected_pixels(detail, SIZE)).mean() < 2.5, row.path
        if rest:
            assert row.format == rest[0]
    assert summary["ok"] == sum(1 for e in expected.values() if e[0] == "ok")


def test_files_vanishing_mid_run_become_rows(
    spark, cfg, tmp_path: Path, monkeypatch, watchdog
) -> None:
    """A file deleted after its folder was listed, before its bytes are read: an error row.

    One deleted after the driver's walk but before a task lists its folder is no longer an
    input: no row (the driver never keeps file names; the listing task is the inventory).
    """
    from fakeface import ingest, listing

    root = tmp_path / "in"
    for i in range(6):
        write(root / f"img_{i}.png", encode(gradient_image(20 + i, 20), "PNG"))
    before_listing, before_read = root / "img_1.png", root / "img_4.png"
    real_walk, real_read = listing.walk_folders, ingest.read_frame
    target = row_path(before_read)  # a str: the wrapper must not need this module in a worker

    def walk_then_delete(*args, **kwargs):
        plan = real_walk(*args, **kwargs)
        before_listing.unlink()  # the driver walked its folder; no task will see it
        return plan

    def delete_then_read(frame, max_bytes):  # runs in a Python worker (pickled by value)
        if target in set(frame["path"]) and before_read.exists():
            before_read.unlink()  # listed by its task, gone before the read
        return real_read(frame, max_bytes)

    monkeypatch.setattr(listing, "walk_folders", walk_then_delete)  # the listing's walk
    monkeypatch.setattr(ingest, "read_frame", delete_then_read)
    out = tmp_path / "out"
    summary = run_ingest(spark, cfg, str(root), str(out), "2026-03-02")
    df = read_partitions(out).set_index("path")
    assert len(df) == 5 == summary["files"] and summary["ok"] == 4
    assert row_path(before_listing) not in df.index
    assert df.loc[row_path(before_read), "status"] == "error"
    assert df.loc[row_path(before_read), "error"] == VANISHED
    assert summary["errors"] == {"unreadable": 1}


# --------------------------------------------------------------------------- faults


def job_command(corpus: Path, output: Path, run_date: str, *overrides: str) -> list[str]:
    command = [
        sys.executable,
        str(PROJECT_ROOT / "jobs" / "ingest.py"),
        "--conf",
        str(PROJECT_ROOT / "conf" / "local.yaml"),
        "--input",
        str(corpus),
        "--output",
        str(output),
        "--run-date",
        run_date,
        "--set",
        "spark.master=local[2]",
        "--set",
        "spark.driver_memory=1g",
    ]
    for override in ("ingest.image_size=32", *overrides):
        command += ["--set", override]
    return command


def make_corpus(root: Path, count: int, prefix: str, side: int = 32, seed: int = 0) -> set[str]:
    rng = np.random.default_rng(seed)
    paths = set()
    for i in range(count):
        data = encode(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), quality=90)
        paths.add(row_path(write(root / f"{prefix}_{i:04d}.jpg", data)))
    return paths


FAIL_ONCE_SCRIPT = """
import json, os, sys
from pyspark.sql import SparkSession
import fakeface.ingest as ingest
from fakeface.config import load_config

corpus, output, marker, conf, project = sys.argv[1:6]
original = ingest.decode_frame

def fail_once(frame, *args, **kwargs):
    try:  # O_EXCL: exactly one attempt of one task fails, whichever comes first
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return original(frame, *args, **kwargs)
    raise RuntimeError("injected failure of the first decode attempt")

# Patched before decode_images builds its closure, which then pickles the wrapper.
ingest.decode_frame = fail_once
spark = (
    SparkSession.builder.master("local[2,2]")  # 2 threads, a task may fail once
    .config("spark.ui.enabled", "false")
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.sql.files.maxPartitionBytes", "4096")
    .config("spark.sql.files.openCostInBytes", "1024")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("OFF")
cfg = load_config(conf, ["ingest.image_size=16", "ingest.arrow_batch_size=4"], project_root=project)
summary = ingest.run_ingest(spark, cfg, corpus, output, "2026-04-01")
spark.stop()
print("SUMMARY " + json.dumps(summary))
"""


def test_a_task_failing_once_is_retried_exactly_once(tmp_path: Path) -> None:
    corpus = tmp_path / "in"
    paths = make_corpus(corpus, 24, "img")
    write(corpus / "broken.jpg", b"not an image")
    paths.add(row_path(corpus / "broken.jpg"))
    script = write(tmp_path / "fail_once.py", FAIL_ONCE_SCRIPT.encode())
    marker, out = tmp_path / "failed_once", tmp_path / "out"
    conf = PROJECT_ROOT / "conf" / "local.yaml"
    result = subprocess.run(
        [sys.executable, str(script), str(corpus), str(out), str(marker), str(conf), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists()  # the failure really happened
    df = read_partitions(out)
    assert not df.path.duplicated().any()
    assert set(df.path) == paths and len(df) == 25
    assert (df.status == "ok").sum() == 24
    summary = json.loads(result.stdout.split("SUMMARY ", 1)[1])
    assert summary["files"] == 25 and summary["errors"] == {"not_an_image": 1}


def staged_files(output: Path) -> list[Path]:
    staging = output / "_staging"
    return [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


def test_sigkill_mid_write_leaves_the_old_partition(spark, cfg, tmp_path: Path) -> None:
    out, date = tmp_path / "out", "2026-04-02"
    old = make_corpus(tmp_path / "old", 3, "old")
    run_ingest(spark, cfg, str(tmp_path / "old"), str(out), date)
    corpus = tmp_path / "big"
    new = make_corpus(corpus, 400, "new", side=96)
    job = subprocess.Popen(
        job_command(corpus, out, date, "ingest.image_size=96", "ingest.arrow_batch_size=4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the JVM and Python workers too
    )
    try:
        deadline = time.monotonic() + 180
        while not any(p.suffix == ".parquet" for p in staged_files(out)):
            assert job.poll() is None, "the job ended before it was killed"
            assert time.monotonic() < deadline, "the job never started writing"
            time.sleep(0.02)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    # A reader sees the old partition, whole, and nothing of the killed run.
    df = read_partitions(out)
    assert set(df.path) == old and len(df) == 3
    assert not (out / "_locks").exists() or not list((out / "_locks").glob("*.lock"))
    # A rerun gives exactly the new rows; the killed run's staging is left to age out.
    summary = run_ingest(spark, cfg, str(corpus), str(out), date)
    df = read_partitions(out)
    assert set(df.path) == new and len(df) == 400 == summary["files"]
    assert not df.path.duplicated().any()


def test_two_runs_of_one_date_at_once_one_wins_whole(spark, cfg, tmp_path: Path) -> None:
    """A job in a subprocess and one in this process write the same date at the same time.

    (Two processes with their own locks' owners; the second is this test's warm session,
    which keeps the test within its time budget on a 2-core machine.)
    """
    out, date = tmp_path / "out", "2026-04-03"
    corpora = {
        "a": make_corpus(tmp_path / "a", 5, "a", seed=1),
        "b": make_corpus(tmp_path / "b", 60, "b", seed=2),
    }
    log = tmp_path / "b.log"
    with log.open("w") as handle:  # a file, not a pipe: a full pipe could stall it
        job = subprocess.Popen(
            job_command(tmp_path / "b", out, date, "ingest.arrow_batch_size=2"),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not any(p.suffix == ".parquet" for p in staged_files(out)):
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # b is writing its staged copy: a runs, stages and commits meanwhile.
        run_ingest(spark, cfg, str(tmp_path / "a"), str(out), date)
        assert job.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        if job.poll() is None:
            job.kill()
    df = read_partitions(out)
    winner = next(name for name, paths in corpora.items() if set(df.path) == paths)
    assert len(df) == len(corpora[winner])  # whole, never mixed
    summary = json.loads((out / "_summaries" / f"run_date={date}.json").read_text())
    assert summary["files"] == len(df) and summary["input"] == str(tmp_path / winner)
    assert list((out / "_locks").iterdir()) == []  # no lock, no temporary lock file
    assert list((out / "_trash").iterdir()) == []
    assert list((out / "_staging").iterdir()) == []


def test_local_lock_files_are_exclusive(spark, tmp_path: Path) -> None:
    fs = storage.HadoopFS(spark, str(tmp_path))
    wins: list[int] = []

    def contender(round_: int) -> None:
        if fs.create_new("owner", f"round_{round_}.lock"):
            wins.append(round_)

    for round_ in range(60):
        threads = [threading.Thread(target=contender, args=(round_,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(wins) == list(range(60))  # one winner per round, never two
    assert (tmp_path / "round_0.lock").read_text() == "owner"
    assert not list(tmp_path.glob("*.tmp"))


def stage(spark, output: Path, run_date: str, rows: int) -> str:
    df = spark.createDataFrame([(f"v{rows}_{i}", i) for i in range(rows)], "path string, n int")
    return storage.stage_dataframe(df.coalesce(1), str(output), run_date)


def live_rows(output: Path, run_date: str) -> int:
    if not (output / f"run_date={run_date}").exists():
        return 0
    df = read_partitions(output)
    return int((df.run_date.astype(str) == run_date).sum())


class Crash(BaseException):
    """A process dying: no `except Exception` runs, only `finally` blocks."""


def test_commit_cut_between_its_renames_is_repaired(spark, tmp_path: Path, monkeypatch) -> None:
    out, date = tmp_path / "out", "2026-04-04"
    fs = storage.HadoopFS(spark, str(out))
    storage.commit_partition(spark, str(out), stage(spark, out, date, 3), date)
    assert live_rows(out, date) == 3
    # The first rename done by hand, the second never: readers see nothing, not a half.
    fs.mkdirs("_trash")
    fs.rename((f"run_date={date}",), ("_trash", storage._trash_name(date)))
    assert live_rows(out, date) == 0
    storage.repair_partition(fs, date)
    assert live_rows(out, date) == 3 and list((out / "_trash").iterdir()) == []
    # Same cut, then the next commit of the date: repaired, then replaced.
    fs.rename((f"run_date={date}",), ("_trash", storage._trash_name(date)))
    storage.commit_partition(spark, str(out), stage(spark, out, date, 5), date)
    assert live_rows(out, date) == 5
    assert list((out / "_trash").iterdir()) == [] and list((out / "_locks").iterdir()) == []


def test_repair_restores_the_newest_never_a_stale_copy(spark, tmp_path: Path, monkeypatch) -> None:
    out, date = tmp_path / "out", "2026-04-05"
    fs = storage.HadoopFS(spark, str(out))
    storage.commit_partition(spark, str(out), stage(spark, out, date, 2), date)
    # Commit of v3 cut after its second rename: the v2 copy stays in _trash.
    real_delete = storage.HadoopFS.delete

    def crash_on_trash_delete(self, *parts):
        if parts[:1] == ("_trash",):
            raise Crash()
        return real_delete(self, *parts)

    monkeypatch.setattr(storage.HadoopFS, "delete", crash_on_trash_delete)
    with pytest.raises(Crash):
        storage.commit_partition(spark, str(out), stage(spark, out, date, 3), date)
    monkeypatch.setattr(storage.HadoopFS, "delete", real_delete)
    assert live_rows(out, date) == 3 and len(list((out / "_trash").iterdir())) == 1
    # Commit of v4 cut between its renames: v3 goes to _trash, v4 never comes in.
    real_rename = storage.HadoopFS.rename

    def crash_on_second_rename(self, src, dst):
        if src[:1] == ("_staging",):
            raise Crash()
        return real_rename(self, src, dst)

    monkeypatch.setattr(storage.HadoopFS, "rename", crash_on_second_rename)
    with pytest.raises(Crash):
        storage.commit_partition(spark, str(out), stage(spark, out, date, 4), date)
    monkeypatch.setattr(storage.HadoopFS, "rename", real_rename)
    assert live_rows(out, date) == 0
    storage.repair_partition(fs, date)
    assert live_rows(out, date) == 3  # v3, the last live one: never the stale v2
    assert list((out / "_trash").iterdir()) == []


def test_failed_second_rename_puts_the_old_partition_back(
    spark, tmp_path: Path, monkeypatch
) -> None:
    out, date = tmp_path / "out", "2026-04-06"
    storage.commit_partition(spark, str(out), stage(spark, out, date, 2), date)
    staged = stage(spark, out, date, 6)
    real_rename = storage.HadoopFS.rename

    def failing(self, src, dst):
        if src[:1] == ("_staging",):
            raise storage.FakefaceError("rename failed")
        return real_rename(self, src, dst)

    monkeypatch.setattr(storage.HadoopFS, "rename", failing)
    with pytest.raises(storage.FakefaceError):
        storage.commit_partition(spark, str(out), staged, date)
    monkeypatch.setattr(storage.HadoopFS, "rename", real_rename)
    assert live_rows(out, date) == 2  # still the old one, readable
    assert list((out / "_locks").iterdir()) == []
    storage.commit_partition(spark, str(out), staged, date)  # the staged data is intact
    assert live_rows(out, date) == 6


def test_stale_lock_of_a_dead_process_is_broken(spark, tmp_path: Path) -> None:
    out, date = tmp_path / "out", "2026-04-07"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = write(
        out / "_locks" / f"run_date={date}.lock",
        f"{socket.gethostname()}:{dead.pid}:0123".encode(),
    )
    storage.commit_partition(spark, str(out), stage(spark, out, date, 2), date)
    assert live_rows(out, date) == 2 and not lock.exists()
