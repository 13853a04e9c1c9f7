"""decode_image on its own, without Spark: modes, EXIF rotation, draft decoding, bad input."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from fakeface.decode import decode_image, image_id, pixels_from_bytes, to_rgb
from tests.conftest import encode, gradient_image

LIMIT = 10_000_000


def decoded(data: bytes, size: int = 32) -> np.ndarray:
    result = decode_image(data, size, LIMIT)
    assert result.status == "ok", result.error
    assert result.error is None
    return pixels_from_bytes(result.image, size)


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "I", "I;16", "F"]
)
def test_every_mode_decodes_to_rgb(mode: str) -> None:
    base = Image.fromarray(gradient_image())
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    elif mode in ("I", "F"):
        img = base.convert("L").convert(mode)
    elif mode == "LAB":
        img = Image.new("LAB", base.size, (50, 0, 0))
    else:
        img = base.convert(mode)
    fmt = "TIFF"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    pixels = decoded(buf.getvalue())
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


@pytest.mark.parametrize("mode", ["LAB", "HSV", "PA", "RGBa"])
def test_modes_without_a_file_format_convert(mode: str) -> None:
    img = Image.new(mode, (8, 8))
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (8, 8)


def test_sixteen_bit_scales_instead_of_clipping() -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(ramp)))
    assert rgb.min() == 0 and rgb.max() == 255
    assert len(np.unique(rgb)) > 100


def test_transparency_composited_on_white() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    pixels = decoded(encode(rgba, "PNG"), 16)
    assert (pixels == 255).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(orientation: int) -> None:
    array = gradient_image(64, 32)
    img = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif)
    result = decode_image(buf.getvalue(), 32, LIMIT)
    assert result.status == "ok"
    expected = Image.fromarray(array)
    transpose = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    if transpose is not None:
        expected = expected.transpose(transpose)
    want = np.asarray(expected.resize((32, 32), Image.Resampling.BILINEAR), np.int16)
    got = pixels_from_bytes(result.image, 32).astype(np.int16)
    assert np.abs(got - want).mean() < 6


def test_draft_decode_close_to_full_decode() -> None:
    rng = np.random.default_rng(0)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).resize(
            (600, 600), Image.Resampling.BICUBIC
        )
    )
    data = encode(smooth, "JPEG", quality=92)
    fast = decoded(data, 64).astype(np.int16)
    full_img = Image.open(io.BytesIO(data)).convert("RGB")
    full = np.asarray(full_img.resize((64, 64), Image.Resampling.BILINEAR), np.int16)
    diff = np.abs(fast - full).mean()
    assert diff < 6, diff


def test_original_size_and_format_reported() -> None:
    result = decode_image(encode(gradient_image(40, 30), "PNG"), 16, LIMIT)
    assert (result.orig_width, result.orig_height, result.format) == (40, 30, "PNG")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (None, "unreadable"),
        (b"this is not an image at all", "not_an_image"),
        (b"%PDF-1.7 fake document", "unsupported_format"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported_format"),
    ],
)
def test_bad_bytes_give_specific_errors(data: bytes | None, kind: str) -> None:
    result = decode_image(data, 32, LIMIT)
    assert result.status == "error"
    assert result.image is None
    assert result.error_kind == kind


def test_truncated_jpeg_is_an_error() -> None:
    data = encode(gradient_image(200, 200), "JPEG")
    result = decode_image(data[: len(data) // 2], 32, LIMIT)
    assert result.status == "error"
    assert result.error_kind in {"truncated", "corrupt"}


def test_decompression_bomb_rejected_without_decoding() -> None:
    # A PNG header claiming 40000 x 40000 pixels: rejected from the header alone.
    img = Image.new("L", (1, 1))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = (40000).to_bytes(4, "big") + (40000).to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    result = decode_image(bytes(data), 32, LIMIT)
    assert result.status == "error"
    assert result.error_kind == "too_large"
    assert "1600000000" in result.error


def test_pixel_limit_is_configurable() -> None:
    data = encode(gradient_image(100, 100), "PNG")
    assert decode_image(data, 8, 100 * 100).status == "ok"
    assert decode_image(data, 8, 100 * 100 - 1).error_kind == "too_large"


def test_image_id_is_sha256_of_bytes() -> None:
    assert image_id(b"abc") == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
