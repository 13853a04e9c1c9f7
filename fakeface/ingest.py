"""Ingest: a folder of raw images -> one Parquet row per file, partitioned by run date."""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pandas as pd

from fakeface.decode import STATUS_ERROR, DecodeResult, decode_image, image_id
from fakeface.labels import UNLABELED, parse_path_label

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config

log = logging.getLogger(__name__)

# The decoded columns, in order; `run_date` is the partition column on disk.
DECODED_SCHEMA = (
    "image_id string, path string, label int, level string, regions string, "
    "orig_width int, orig_height int, format string, height int, width int, "
    "image binary, status string, error string"
)
DECODED_COLUMNS = [c.strip().split(" ")[0] for c in DECODED_SCHEMA.split(",")]


def extension_glob(extensions: list[str]) -> str:
    """A Hadoop glob matching the extensions in any letter case: `*.{[jJ][pP][gG],...}`."""
    parts = []
    for ext in extensions:
        ext = ext.lstrip(".")
        parts.append("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext))
    return "*.{" + ",".join(parts) + "}"


# Spark reads at most this many bytes per file (spark.sql.sources.binaryFile.maxLength); a
# larger file fails its task, and so the job, unless it is kept away from binaryFile.
_BINARY_MAX_LENGTH_KEY = "spark.sql.sources.binaryFile.maxLength"
_BINARY_MAX_LENGTH_DEFAULT = 2**31 - 1
# Above this many paths Spark lists them with a distributed job: slow, and useless here,
# where every path is a file the scan has already seen.
_PARALLEL_LISTING_KEY = "spark.sql.sources.parallelPartitionDiscovery.threshold"
_READ_SCHEMA = "path string, content binary, read_error string"

VANISHED = "unreadable: the file vanished before it could be read"


@dataclass
class LocalListing:
    """A local input folder as scanned before Spark sees it: one entry per file named like an image.

    `files` go to Spark's binaryFile; `empty` (0 bytes, which binaryFile skips) and
    `problems` (path, error) become rows without being opened; `hidden` are names Spark
    ignores by convention (leading '.' or '_'), skipped here too and only counted.
    """

    files: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows the listing must produce: one per file named like an image."""
        return len(self.files) + len(self.empty) + len(self.problems)


@dataclass
class InputFiles:
    """(path, content, read_error) rows, one per input file, and the scan behind them."""

    frame: DataFrame
    listing: LocalListing | None  # None for non-local URIs, listed by Spark itself


def is_local_path(path: str) -> bool:
    """A plain path or a file: URI (the driver can scan it with os.scandir)."""
    return "://" not in path or path.startswith("file:")


def local_path(path: str) -> str:
    """A plain path or a file: URI as an absolute local path."""
    if path.startswith("file:"):
        path = urlsplit(path).path
    return os.path.abspath(path)


def _row_path(os_path: str) -> str:
    """The row key of a local file, spelled as binaryFile spells its `path` column."""
    return "file:" + os_path


def _printable(os_path: str) -> str:
    """A path whose name is not valid UTF-8, with the bad bytes escaped (\\xff)."""
    return os.fsencode(os_path).decode("utf-8", "backslashreplace")


def _is_utf8(os_path: str) -> bool:
    try:
        os_path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes come back from scandir as surrogates
        return False
    return True


def _is_hidden(name: str) -> bool:
    """Names Spark's file index skips: leading '.', or '_' (not `k=v`, not `_metadata`)."""
    if name.startswith("."):
        return True
    return name.startswith("_") and "=" not in name and not name.startswith("_metadata")


def _special_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return f"file type {stat.S_IFMT(mode):#o}"


def _stat_error(os_path: str, exc: OSError, is_link: bool) -> str:
    if exc.errno == errno.ELOOP:
        return "unreadable: symlink loop (too many levels of symbolic links)"
    if is_link and exc.errno == errno.ENOENT:
        try:
            target = os.readlink(os_path)
        except OSError:
            target = "?"
        return f"unreadable: dangling symlink (its target {_printable(target)!r} does not exist)"
    if exc.errno == errno.ENOENT:
        return VANISHED
    return f"unreadable: {exc.strerror or type(exc).__name__}"


def scan_local_images(root: str, extensions: list[str], max_bytes: int) -> LocalListing:
    """Walk a local folder the way binaryFile would, but decide about each entry first.

    Regular files (directly or through a symlink) named like an image are read by Spark;
    FIFOs, sockets, devices, dangling symlinks and symlink loops become error rows and are
    never opened (a FIFO would block a reader forever). Folders are walked whatever their
    name, symlinked ones too, except a link back to a folder being walked (a loop).
    """
    from fakeface.errors import InputError

    suffixes = tuple("." + ext.lstrip(".").lower() for ext in extensions)
    listing = LocalListing()
    top = local_path(root)
    try:
        top_stat = os.stat(top)
    except OSError as exc:
        raise InputError(f"input {root} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(top_stat.st_mode):
        _add_file(listing, top, top_stat, False, max_bytes)
        return listing
    stack = [(top, frozenset({(top_stat.st_dev, top_stat.st_ino)}))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            # Its files are unknown: one row says so rather than a crash or a silent gap.
            listing.problems.append(
                (_row_path(_printable(folder)), f"unreadable: cannot list this folder: {exc}")
            )
            continue
        subfolders = []
        for entry in entries:
            named_like_image = entry.name.lower().endswith(suffixes)
            if not named_like_image and not entry.is_dir():
                continue
            if _is_hidden(entry.name):
                listing.hidden.append(_printable(entry.path))
                continue
            is_link = entry.is_symlink()
            try:
                st = entry.stat()  # follows symlinks; lstat for everything else
            except OSError as exc:
                if named_like_image:
                    error = _stat_error(entry.path, exc, is_link)
                    listing.problems.append((_row_path(_printable(entry.path)), error))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    log.warning("not following %s: it links back to a folder above it", entry.path)
                else:
                    subfolders.append((entry.path, ancestors | {key}))
            elif named_like_image:
                _add_file(listing, entry.path, st, is_link, max_bytes)
        stack.extend(reversed(subfolders))
    if listing.hidden:
        log.warning(
            "skipped %d hidden entries (names starting with '.' or '_'), e.g. %s",
            len(listing.hidden),
            listing.hidden[0],
        )
    return listing


def _add_file(
    listing: LocalListing, os_path: str, st: os.stat_result, is_link: bool, max_bytes: int
) -> None:
    """Sort one entry named like an image into files, empty or problems."""
    path = _row_path(_printable(os_path))
    if not stat.S_ISREG(st.st_mode):
        what = _special_kind(st.st_mode)
        listing.problems.append(
            (path, f"unreadable: not a regular file ({'symlink to a ' if is_link else ''}{what})")
        )
    elif not _is_utf8(os_path):
        # Spark (Java) cannot open a name that is not UTF-8; py4j could not even carry it.
        listing.problems.append((path, "unreadable: the file name is not valid UTF-8"))
    elif st.st_size == 0:
        listing.empty.append(path)
    elif st.st_size > max_bytes:
        listing.problems.append(
            (
                path,
                f"too_large: the file is {st.st_size} bytes; Spark reads at most {max_bytes}"
                f" ({_BINARY_MAX_LENGTH_KEY})",
            )
        )
    else:
        listing.files.append(path)


def read_local_file(os_path: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, error) for one local file; never blocks on a FIFO."""
    try:
        fd = os.open(os_path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return None, _stat_error(os_path, exc, os.path.islink(os_path))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"unreadable: not a regular file ({_special_kind(st.st_mode)})"
        if st.st_size > max_bytes:
            return None, f"too_large: the file is {st.st_size} bytes; the limit is {max_bytes}"
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), None
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or type(exc).__name__}"
    finally:
        os.close(fd)


def read_input_files(
    spark: SparkSession, input_path: str, extensions: list[str], ignore_missing: bool = False
) -> InputFiles:
    """Every image file below `input_path` as (path, content, read_error) rows, one per file.

    Local input is scanned first (`scan_local_images`): only regular files reach binaryFile,
    the rest are rows with a `read_error`. Other URIs are listed by Spark, as before.
    `ignore_missing`: a local file deleted between listing and reading loses its row instead
    of failing the job; only for callers that then put it back (`complete_staged`).
    """
    max_bytes = int(spark.conf.get(_BINARY_MAX_LENGTH_KEY, str(_BINARY_MAX_LENGTH_DEFAULT)))
    if not is_local_path(input_path):
        return InputFiles(_read_remote(spark, input_path, extensions), None)
    listing = scan_local_images(input_path, extensions, max_bytes)
    extra = [(p, b"", None) for p in listing.empty]
    read = _read_listed(spark, listing, ignore_missing)  # may add vanished files to problems
    extra += [(p, None, error) for p, error in listing.problems]
    frame = spark.createDataFrame(extra, _READ_SCHEMA)
    if read is not None:
        frame = read.unionByName(frame)
    return InputFiles(frame, listing)


def _read_listed(
    spark: SparkSession, listing: LocalListing, ignore_missing: bool
) -> DataFrame | None:
    """binaryFile over exactly the listed regular files (no globbing, no listing of folders)."""
    from pyspark.sql import functions as F

    from fakeface.errors import InputError

    for _ in range(3):
        if not listing.files:
            return None
        reader = (
            spark.read.format("binaryFile")
            # Paths are file names, not patterns: `a[1].jpg` is a name.
            .option("__globPaths__", "false")
            # No partition inference from folder names like `x=1`.
            .option("recursiveFileLookup", "true")
            # A file deleted after listing fails the job, or with `ignore_missing` loses its
            # row, which the caller puts back as an error (`complete_staged`).
            .option("ignoreMissingFiles", str(ignore_missing).lower())
        )
        previous = spark.conf.get(_PARALLEL_LISTING_KEY, None)
        spark.conf.set(_PARALLEL_LISTING_KEY, str(2**31 - 1))
        try:
            files = reader.load(["file://" + p[len("file:") :] for p in listing.files])
        except Exception as exc:
            if "PATH_NOT_FOUND" not in str(exc):
                raise
            # Deleted between the scan and Spark's check: an error row, then try again.
            gone = {p for p in listing.files if not os.path.exists(p[len("file:") :])}
            if not gone:
                raise
            log.warning("%d files vanished before Spark listed them: %s", len(gone), sorted(gone))
            listing.files = [p for p in listing.files if p not in gone]
            listing.problems.extend((p, VANISHED) for p in sorted(gone))
            continue
        finally:
            if previous is None:
                spark.conf.unset(_PARALLEL_LISTING_KEY)
            else:
                spark.conf.set(_PARALLEL_LISTING_KEY, previous)
        return files.select("path", "content", F.lit(None).cast("string").alias("read_error"))
    raise InputError("input files kept vanishing while being listed; is something deleting them?")


def _read_remote(spark: SparkSession, input_path: str, extensions: list[str]) -> DataFrame:
    """Spark lists a non-local URI itself; empty files, which it skips, are added back."""
    from pyspark.sql import functions as F

    from fakeface.storage import qualify

    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", extension_glob(extensions))
        .load(qualify(input_path))
    )
    no_error = F.lit(None).cast("string").alias("read_error")
    listed = [hadoop_path_string(uri) for uri in files.inputFiles()]
    scanned = files.select("path")  # no content column: Spark reads no file bytes for this
    if scanned.count() == len(listed):
        return files.select("path", "content", no_error)
    listing = spark.createDataFrame([(p,) for p in listed], "path string")
    empty = listing.join(scanned, "path", "left_anti").select(
        "path", F.lit(b"").cast("binary").alias("content"), no_error
    )
    return files.select("path", "content", no_error).unionByName(empty)


def read_image_files(spark: SparkSession, input_path: str, extensions: list[str]) -> DataFrame:
    """Every image file below `input_path` (recursive) as (path, content) rows, one per file.

    Files that cannot be read (FIFOs, dangling symlinks, ...) have a null content; see
    `read_input_files` for the reason of each.
    """
    return read_input_files(spark, input_path, extensions).frame.select("path", "content")


def hadoop_path_string(uri: str) -> str:
    """A listed file URI (`file:///a%20b.jpg`) as binaryFile's `path` column spells it."""
    parsed = urlsplit(uri)
    authority = f"//{parsed.netloc}" if parsed.netloc else ""
    return f"{parsed.scheme}:{authority}{unquote(parsed.path)}"


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


def decode_images(df: DataFrame, size: int, max_pixels: int, labeled: bool = True) -> DataFrame:
    """(path, content[, read_error]) rows -> decoded rows (DECODED_SCHEMA), one per input row."""

    def decode_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            yield decode_frame(frame, size, max_pixels, labeled)

    return df.mapInPandas(decode_batches, schema=DECODED_SCHEMA)


def summarize_partition(df: DataFrame) -> dict[str, Any]:
    """Counts of a decoded partition: files, ok, errors by kind, duplicate bytes."""
    from pyspark.sql import functions as F

    kinds = (
        df.where(F.col("status") != "ok")
        .groupBy(F.substring_index("error", ":", 1).alias("kind"))
        .count()
        .collect()
    )
    totals = df.agg(
        F.count(F.lit(1)).alias("files"),
        F.sum(F.when(F.col("status") == "ok", 1).otherwise(0)).alias("ok"),
        F.countDistinct("image_id").alias("distinct"),
        F.sum(F.when(F.col("image_id").isNull(), 1).otherwise(0)).alias("no_id"),
    ).first()
    files = int(totals["files"] or 0)
    with_id = files - int(totals["no_id"] or 0)
    return {
        "files": files,
        "ok": int(totals["ok"] or 0),
        "errors": {row["kind"]: int(row["count"]) for row in kinds},
        # A file whose bytes another file already holds; both keep their rows.
        "duplicates": with_id - int(totals["distinct"] or 0),
    }


def run_ingest(
    spark: SparkSession,
    cfg: Config,
    input_path: str,
    output_path: str,
    run_date: str,
    labeled: bool = True,
) -> dict[str, Any]:
    """Decode every image below `input_path` into `output_path/run_date=<date>/`."""
    from fakeface import storage

    started = time.monotonic()
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.ingest.arrow_batch_size))
    size, max_pixels = cfg.ingest.image_size, cfg.ingest.max_pixels
    files = read_input_files(spark, input_path, cfg.ingest.extensions, ignore_missing=True)
    decoded = decode_images(files.frame, size, max_pixels, labeled)
    staged = storage.stage_dataframe(decoded, output_path, run_date)
    staged_uri = storage.staged_uri(output_path, staged)
    columns = ("image_id", "status", "error")
    summary = summarize_partition(spark.read.parquet(staged_uri).select(*columns))
    if files.listing is not None and summary["files"] != files.listing.rows:
        complete_staged(spark, files.listing, staged_uri, size, max_pixels, labeled)
        summary = summarize_partition(spark.read.parquet(staged_uri).select(*columns))
    seconds = time.monotonic() - started
    summary.update(
        {
            "job": "ingest",
            "run_date": run_date,
            "input": input_path,
            "output": output_path,
            "image_size": size,
            "labeled": labeled,
            # Names Spark ignores by convention ('.' or '_' first); None: not counted (URI).
            "hidden_skipped": len(files.listing.hidden) if files.listing is not None else None,
            "seconds": round(seconds, 2),
            "images_per_s": round(summary["files"] / seconds, 1) if seconds > 0 else None,
        }
    )
    # The summary is written under the partition's lock, with the swap: two runs of one
    # date cannot leave one run's data with the other's summary.
    storage.commit_partition(spark, output_path, staged, run_date, summary=summary)
    summary["summary_path"] = storage.summary_location(output_path, run_date)
    return summary


def complete_staged(
    spark: SparkSession,
    listing: LocalListing,
    staged_uri: str,
    size: int,
    max_pixels: int,
    labeled: bool = True,
) -> int:
    """Add a row for each listed file the Spark read lost; return how many were added.

    binaryFile drops a file deleted between listing and reading (`ignoreMissingFiles`) and
    one that shrank to 0 bytes; each is looked at again here and gets its row: an error
    (`unreadable: ... vanished`) or, if it can be read now, its decoded content.
    """
    staged = spark.read.parquet(staged_uri)
    if staged.count() == listing.rows:
        return 0
    seen = {row[0] for row in staged.select("path").collect()}
    lost = [p for p in listing.files if p not in seen]
    if not lost:
        return 0
    max_bytes = int(spark.conf.get(_BINARY_MAX_LENGTH_KEY, str(_BINARY_MAX_LENGTH_DEFAULT)))
    read = [read_local_file(p[len("file:") :], max_bytes) for p in lost]
    frame = pd.DataFrame(
        {
            "path": lost,
            "content": [content for content, _ in read],
            "read_error": [error for _, error in read],
        }
    )
    rows = decode_frame(frame, size, max_pixels, labeled)
    log.warning("%d listed files were not read by Spark; added as rows: %s", len(lost), lost[:3])
    spark.createDataFrame(rows, DECODED_SCHEMA).write.mode("append").parquet(staged_uri)
    return len(lost)


def format_summary(summary: dict[str, Any]) -> str:
    """The one-line summary printed by the job."""
    errors = ", ".join(f"{k}={v}" for k, v in sorted(summary["errors"].items())) or "none"
    return (
        f"ingest {summary['run_date']}: files={summary['files']} ok={summary['ok']} "
        f"errors={sum(summary['errors'].values())} ({errors}) "
        f"duplicates={summary['duplicates']} seconds={summary['seconds']} "
        f"images/s={summary['images_per_s']}"
    )


def read_ingested(spark: SparkSession, data_path: str) -> DataFrame:
    """An ingested dataset (all run dates, `run_date` column), as written by `run_ingest`."""
    from fakeface.errors import InputError
    from fakeface.storage import qualify

    # Partition discovery skips `_staging`, `_summaries` and the other `_` names.
    try:
        return spark.read.parquet(qualify(data_path))
    except Exception as exc:
        text = str(exc)
        if any(s in text for s in ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA", "does not exist")):
            raise InputError(f"no ingested data in {data_path}: run jobs/ingest.py first") from None
        raise
