"""A platform's re-encode of an upload: the copy every accuracy figure is also measured on.

Platforms decode, resize and re-save uploads, which erases what a file's compression says
about its origin (the CIPLAB fakes with foreign JPEG quantisation tables). A detector that
holds up on this copy reads the image, not the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

PLATFORM_SIZE = 512
PLATFORM_QUALITY = 85


def platform_reencode(
    data: bytes, size: int = PLATFORM_SIZE, quality: int = PLATFORM_QUALITY
) -> bytes:
    """Decode, RGB, resize to size x size (bilinear, no reducing gap), baseline JPEG 4:2:0.

    No metadata is carried over (no EXIF, ICC or comments).
    """
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    out = io.BytesIO()
    resized.save(out, format="JPEG", quality=quality, subsampling=2, progressive=False)
    return out.getvalue()


def reencode_tree(src_dir: str | Path, dst_dir: str | Path, suffixes: tuple[str, ...]) -> int:
    """Write `platform_reencode` of every image under `src_dir` to the same relative path.

    Returns the number of files written; files already there are kept (the copy is a pure
    function of the source bytes).
    """
    src, dst = Path(src_dir), Path(dst_dir)
    n = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        target = dst / path.relative_to(src)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(platform_reencode(path.read_bytes()))
            tmp.replace(target)
        n += 1
    return n


# Training-time re-encodes of the part recipe (fakeface.models.part_heads): a range of sizes,
# qualities and chroma subsampling, so the part heads learn what survives a platform's
# re-save. The accuracy benchmark also scores one setting outside these ranges
# (UNSEEN_SETTING: quality 60, 4:2:2), which training never sees.
AUGMENT_SIZES = (320, 640)  # long side, px (uniform)
AUGMENT_QUALITIES = (70, 95)  # JPEG quality (uniform, inclusive)
AUGMENT_SUBSAMPLING = (0, 2)  # PIL: 0 = 4:4:4, 2 = 4:2:0
UNSEEN_SETTING = {"size": 448, "quality": 60, "subsampling": 1}  # 1 = 4:2:2


def reencode_pixels(rgb: np.ndarray, size: int, quality: int, subsampling: int) -> np.ndarray:
    """A uint8 (H, W, 3) image re-saved as a JPEG `size` px on its long side, decoded back
    to (H, W) the way the scoring job decodes it (bilinear to the model's size)."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    small = image.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))),
        Image.Resampling.BILINEAR,
        reducing_gap=None,
    )
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=int(quality), subsampling=int(subsampling))
    with Image.open(io.BytesIO(out.getvalue())) as decoded:
        back = decoded.convert("RGB")
    if back.size != (w, h):
        back = back.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(back, dtype=np.uint8)


def random_reencode(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`reencode_pixels` at a size, quality and subsampling drawn from the training ranges."""
    return reencode_pixels(
        rgb,
        int(rng.integers(AUGMENT_SIZES[0], AUGMENT_SIZES[1] + 1)),
        int(rng.integers(AUGMENT_QUALITIES[0], AUGMENT_QUALITIES[1] + 1)),
        int(rng.choice(AUGMENT_SUBSAMPLING)),
    )
