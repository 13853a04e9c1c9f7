"""A platform's re-encode of an upload: the copy every accuracy figure is also measured on.

Platforms decode, resize and re-save uploads, which erases what a file's compression says
about its origin (the CIPLAB fakes with foreign JPEG quantisation tables). A detector that
holds up on this copy reads the image, not the file.
"""

from __future__ import annotations

import io
from pathlib import Path

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
