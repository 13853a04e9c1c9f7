"""Decoding one image file to a fixed-size RGB array. Pure Python: no Spark here.

`decode_image` never raises: whatever the bytes, it returns a `DecodeResult` whose `status`
is 'ok' (with the pixels) or 'error' (with a message that starts with the error's kind).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

STATUS_OK = "ok"
STATUS_ERROR = "error"

# Kinds that start every error message, so summaries can count errors by kind.
ERROR_EMPTY = "empty"
ERROR_NOT_IMAGE = "not_an_image"
ERROR_UNSUPPORTED = "unsupported_format"
ERROR_TOO_LARGE = "too_large"
ERROR_TRUNCATED = "truncated"
ERROR_CORRUPT = "corrupt"
ERROR_UNREADABLE = "unreadable"

# Formats Pillow cannot decode here, sniffed from magic bytes for a specific message.
_KNOWN_UNSUPPORTED = (
    (b"%PDF", "PDF document"),
    (b"<svg", "SVG drawing"),
    (b"<?xml", "XML/SVG document"),
    (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
)


@dataclass(frozen=True)
class DecodeResult:
    """One decoded file: raw RGB pixels (H*W*3 bytes) or an error message."""

    status: str
    image: bytes | None
    orig_width: int | None
    orig_height: int | None
    format: str | None
    error: str | None

    @property
    def error_kind(self) -> str | None:
        """The error's kind: the message up to the first colon."""
        return self.error.split(":", 1)[0] if self.error else None


def image_id(data: bytes) -> str:
    """The content key of a file: sha256 of its bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def _error(kind: str, message: str, **known: object) -> DecodeResult:
    return DecodeResult(
        status=STATUS_ERROR,
        image=None,
        orig_width=known.get("width"),  # type: ignore[arg-type]
        orig_height=known.get("height"),  # type: ignore[arg-type]
        format=known.get("format"),  # type: ignore[arg-type]
        error=f"{kind}: {message}",
    )


def _sniff_unsupported(data: bytes) -> str | None:
    head = data[:64].lstrip()
    for magic, name in _KNOWN_UNSUPPORTED:
        if head.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return f"ISO media ({data[8:12].decode('ascii', 'replace').strip()}) e.g. HEIC/AVIF"
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # High bit depth: scale to 0..255 instead of letting convert() clip at 255.
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        low = 0.0 if mode.startswith("I;16") else min(float(arr.min()), 0.0)
        scaled = np.clip((arr - low) / max(top - low, 1e-9) * 255.0 + 0.5, 0, 255)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if mode == "LAB":
        srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
        return ImageCms.applyTransform(image, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))  # type: ignore[return-value]
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_image(data: bytes | None, size: int, max_pixels: int) -> DecodeResult:
    """Decode, apply EXIF orientation, convert to RGB and resize (bilinear) to size x size."""
    try:
        return _decode(data, size, max_pixels)
    except MemoryError:
        return _error(ERROR_TOO_LARGE, "out of memory while decoding")
    except Exception as exc:  # a decoder bug must cost one row, never the job
        return _error(ERROR_CORRUPT, f"{type(exc).__name__}: {exc}")


def _decode(data: bytes | None, size: int, max_pixels: int) -> DecodeResult:
    if data is None:
        return _error(ERROR_UNREADABLE, "no content could be read from the file")
    if len(data) == 0:
        return _error(ERROR_EMPTY, "file is empty (0 bytes)")
    with warnings.catch_warnings():
        # We enforce our own pixel limit below; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            return _error(ERROR_TOO_LARGE, f"decompression bomb: {exc}")
        except UnidentifiedImageError:
            what = _sniff_unsupported(data)
            if what:
                return _error(ERROR_UNSUPPORTED, f"{what} is not a supported image format")
            return _error(ERROR_NOT_IMAGE, f"cannot identify an image in {len(data)} bytes")
        width, height, fmt = image.size[0], image.size[1], image.format
        known = {"width": width, "height": height, "format": fmt}
        if width * height > max_pixels:
            return _error(
                ERROR_TOO_LARGE,
                f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                " (possible decompression bomb)",
                **known,
            )
        if width < 1 or height < 1:
            return _error(ERROR_CORRUPT, f"invalid dimensions {width}x{height}", **known)
        try:
            if fmt == "JPEG":
                # DCT-domain downscaling: decode at 1/2, 1/4 or 1/8 when that still covers size.
                image.draft("RGB", (size, size))
            image.load()
        except OSError as exc:
            message = str(exc)
            kind = ERROR_TRUNCATED if "truncated" in message.lower() else ERROR_CORRUPT
            return _error(kind, message or type(exc).__name__, **known)
        except (SyntaxError, ValueError, EOFError) as exc:
            return _error(ERROR_CORRUPT, f"{type(exc).__name__}: {exc}", **known)
        with contextlib.suppress(Exception):  # broken EXIF must not cost the pixels
            # in place: without an orientation to undo, a copy would be the whole result
            ImageOps.exif_transpose(image, in_place=True)
        rgb = to_rgb(image)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return DecodeResult(
            status="ok",
            image=rgb.tobytes(),  # H x W x 3 uint8, row-major: what np.asarray(rgb) holds
            orig_width=width,
            orig_height=height,
            format=fmt,
            error=None,
        )


def pixels_from_bytes(image: bytes, size: int) -> np.ndarray:
    """The H x W x 3 uint8 array stored in a Parquet `image` cell."""
    return np.frombuffer(image, dtype=np.uint8).reshape(size, size, 3)
