"""The lake's Parquet files, written by pyarrow in the Python workers, and their adoption.

A writing task (`fakeface.ingest.write_listed`) feeds decoded frames to a `LakeFileWriter`
and returns one row per file it wrote, with the summary's counts, plus one row per image id
(`WRITTEN_SCHEMA`); the driver gathers them in one Spark job (`collect_written`) and keeps
only the files of the task attempts Spark accepted (`adopt_written`). Nothing reads the
files back.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from fakeface.frames import DECODED_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Parquet codecs Spark writes (ingest.parquet_codec).
PARQUET_CODECS = ("none", "uncompressed", "snappy", "lz4", "lz4_raw", "zstd", "gzip")
# Spark's and pyarrow's names of the Parquet codecs (ingest.parquet_codec).
_PYARROW_CODECS = {"uncompressed": "none", "lz4_raw": "lz4"}
# Pixels buffered before a row group is written: 16 MB (one Arrow batch at 600 px). A larger
# buffer is memory the allocator hands back and faults in again for every group: 64 MB cost
# 0.7 ms CPU an image more at 600 px (README "Benchmarks", "Ingest").
ROW_GROUP_BYTES = 16 * 2**20
# One row per written file (file, rows, ok, errors as JSON {kind: count}) and, apart, one
# row per image id the task wrote (file null): the summary is counted where the rows are
# written, never by reading the files back.
WRITTEN_SCHEMA = "file string, rows long, ok long, errors string, image_id string"


def decoded_arrow_schema() -> Any:
    """DECODED_SCHEMA as an Arrow schema: what Spark would write, written by pyarrow."""
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int32(), "binary": pa.binary()}
    fields = [c.strip().split(" ") for c in DECODED_SCHEMA.split(",")]
    return pa.schema([(name, types[kind]) for name, kind in fields])


def decoded_table(decoded: pd.DataFrame, schema: Any) -> Any:
    """Decoded rows as an Arrow table of `schema`, the pixels not copied: each image's bytes
    back a one-value chunk of the `image` column (the Parquet writer copies them once, into
    its pages). Copying 1 MB an image into one Arrow buffer cost more than the writing."""
    import numpy as np
    import pyarrow as pa

    at = schema.get_field_index("image")
    small = schema.remove(at)
    table = pa.Table.from_pandas(decoded[small.names], schema=small, preserve_index=False)
    chunks = []
    for pixels in decoded["image"]:
        if pixels is None:
            chunks.append(pa.nulls(1, pa.binary()))
        else:
            offsets = pa.py_buffer(np.array([0, len(pixels)], dtype=np.int32))
            chunks.append(
                pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(pixels)])
            )
    return table.add_column(at, schema.field(at), pa.chunked_array(chunks, pa.binary()))


def count_decoded(decoded: pd.DataFrame) -> tuple[int, dict[str, int]]:
    """(ok rows, error rows by kind) of decoded rows; the kind is the error up to its first
    colon, as `fakeface.ingest.summarize_partition` counts it."""
    ok = 0
    errors: dict[str, int] = {}
    for status, error in zip(decoded["status"], decoded["error"], strict=True):
        if status == "ok":
            ok += 1
        else:
            kind = error.split(":", 1)[0] if isinstance(error, str) else None
            errors[kind] = errors.get(kind, 0) + 1  # type: ignore[index]
    return ok, errors


class LakeFileWriter:
    """One Parquet file of decoded rows (`target`), written by pyarrow as rows come in.

    Row groups of about `ROW_GROUP_BYTES`; the file exists once a row group is written (a
    task without rows writes none). Counts what it wrote: rows, ok, errors by kind.
    """

    def __init__(self, target: str, codec: str = "none") -> None:
        self.target = target
        self.compression = _PYARROW_CODECS.get(codec, codec)
        self.schema = decoded_arrow_schema()
        self.rows = self.ok = 0
        self.errors: dict[str, int] = {}
        self._writer: Any = None
        self._pending: list[Any] = []
        self._pending_bytes = 0

    def add(self, decoded: pd.DataFrame) -> None:
        """Buffer decoded rows; write a row group once enough are buffered."""
        table = decoded_table(decoded, self.schema)
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        self.rows += len(decoded)
        ok, errors = count_decoded(decoded)
        self.ok += ok
        for kind, count in errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        if self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def close(self) -> bool:
        """Write what is buffered and close the file; False when no row was ever added."""
        if self._pending:
            self._flush()
        if self._writer is None:
            return False
        self._writer.close()
        return True

    def file_row(self) -> pd.DataFrame:
        """The task's row for this file (WRITTEN_SCHEMA, no image id)."""
        return pd.DataFrame(
            {
                "file": [self.target],
                "rows": [self.rows],
                "ok": [self.ok],
                "errors": [json.dumps(self.errors)],
                "image_id": pd.Series([None], dtype=object),
            }
        )

    def _flush(self) -> None:
        import pyarrow as pa

        if self._writer is None:
            self._writer = _open_writer(self.target, self.schema, self.compression)
        group = pa.concat_tables(self._pending)
        self._writer.write_table(group, row_group_size=max(1, group.num_rows))
        self._pending, self._pending_bytes = [], 0


def _open_writer(target: str, schema: Any, compression: str) -> Any:
    import pyarrow.parquet as pq

    os.makedirs(os.path.dirname(target), exist_ok=True)
    # No dictionary and no statistics for the pixels (unique, large): a dictionary page of
    # raw pixels made Spark's reader 2.4x slower on them; the small columns keep both.
    small = [name for name in schema.names if name != "image"]
    return pq.ParquetWriter(
        target, schema, compression=compression, use_dictionary=small, write_statistics=small
    )


def id_rows(ids: list[str]) -> pd.DataFrame:
    """Rows of WRITTEN_SCHEMA carrying only image ids (for the duplicate count)."""
    none = pd.Series([None] * len(ids), dtype=object)
    return pd.DataFrame({"file": none, "rows": none, "ok": none, "errors": none, "image_id": ids})


@dataclass
class Written:
    """What the writing tasks returned: their files (file, rows) and the partition's counts."""

    files: list[tuple[str, int]]
    summary: dict[str, Any]


def collect_written(written: DataFrame) -> Written:
    """Run the writing tasks (`WRITTEN_SCHEMA` rows; one Spark job) and gather their files
    and counts: files, ok, errors by kind, duplicates, as `summarize_partition` counts them.

    The files come back to the driver (one row per task); the image ids are counted
    distinct by Spark, never collected.
    """
    from pyspark.sql import functions as F

    file_row = F.struct("file", "rows", "ok", "errors")
    result = written.agg(
        F.collect_list(F.when(F.col("file").isNotNull(), file_row)).alias("files"),
        F.count("image_id").alias("with_id"),
        F.countDistinct("image_id").alias("distinct"),
    ).first()
    files: list[tuple[str, int]] = []
    ok = 0
    errors: dict[str, int] = {}
    for row in (result["files"] if result else None) or []:
        files.append((row["file"], int(row["rows"])))
        ok += int(row["ok"])
        for kind, count in json.loads(row["errors"]).items():
            errors[kind] = errors.get(kind, 0) + count
    with_id = int(result["with_id"] or 0) if result else 0
    distinct = int(result["distinct"] or 0) if result else 0
    summary = {
        "files": sum(rows for _, rows in files),
        "ok": ok,
        "errors": errors,
        # A file whose bytes another file already holds; both keep their rows.
        "duplicates": with_id - distinct,
    }
    return Written(files, summary)


def adopt_written(folder: str, written: list[tuple[str, int]]) -> int:
    """Move the files the tasks returned into `folder` as part-NNNNN.parquet, drop the rest
    (failed attempts); an empty result gets one empty file with the schema. -> rows."""
    for i, (file, _) in enumerate(sorted(written)):
        os.rename(file, os.path.join(folder, f"part-{i:05d}.parquet"))
    shutil.rmtree(os.path.join(folder, "_attempts"), ignore_errors=True)
    if not written:
        import pyarrow.parquet as pq

        os.makedirs(folder, exist_ok=True)
        schema = decoded_arrow_schema()
        pq.write_table(schema.empty_table(), os.path.join(folder, "part-00000.parquet"))
    return sum(rows for _, rows in written)
