"""Decoded frames: a pandas batch of file bytes -> the decoded columns, one row per input row.

The one decode every path runs (ingest, the nightly job, the registered model's pyfunc),
free of Spark so that a model server needs only pandas, Pillow and numpy to run it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fakeface.decode import STATUS_ERROR, DecodeResult, decode_image, image_id
from fakeface.labels import UNLABELED, parse_path_label

# The decoded columns, in order; `run_date` is the partition column on disk.
DECODED_SCHEMA = (
    "image_id string, path string, label int, level string, regions string, "
    "orig_width int, orig_height int, format string, height int, width int, "
    "image binary, status string, error string"
)
DECODED_COLUMNS = [c.strip().split(" ")[0] for c in DECODED_SCHEMA.split(",")]


def decode_frame(
    frame: pd.DataFrame, size: int, max_pixels: int, labeled: bool = True
) -> pd.DataFrame:
    """Decode a pandas batch of (path, content[, read_error]) into the decoded columns, 1:1."""
    rows: list[dict[str, Any]] = []
    read_errors = frame["read_error"] if "read_error" in frame.columns else [None] * len(frame)
    for path, content, read_error in zip(frame["path"], frame["content"], read_errors, strict=True):
        data = bytes(content) if content is not None else None
        if isinstance(read_error, str):  # the file could not be read: say why, decode nothing
            data = None
            result = DecodeResult(STATUS_ERROR, None, None, None, None, read_error)
        else:
            result = decode_image(data, size, max_pixels)
        tags = parse_path_label(path) if labeled else UNLABELED
        ok = result.status == "ok"
        rows.append(
            {
                "image_id": image_id(data) if data is not None else None,
                "path": path,
                "label": tags.label,
                "level": tags.level,
                "regions": tags.regions,
                "orig_width": result.orig_width,
                "orig_height": result.orig_height,
                "format": result.format,
                "height": size if ok else None,
                "width": size if ok else None,
                "image": result.image,
                "status": result.status,
                "error": result.error,
            }
        )
    out = pd.DataFrame(rows, columns=DECODED_COLUMNS)
    for column in ("label", "orig_width", "orig_height", "height", "width"):
        out[column] = out[column].astype("Int32")
    return out
