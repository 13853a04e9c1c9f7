"""Date-partitioned outputs that readers never see half-written.

Layout of an output folder (any Hadoop file system: local, HDFS, S3A, GCS):

    run_date=2026-11-26/part-*.parquet     the data, and nothing else outside `_` names
    _staging/<run_date>-<uuid>/            a job's write in progress
    _trash/<run_date>-<uuid>/              the partition being replaced, deleted after the swap
    _locks/run_date=<date>.lock            held while a partition is swapped
    _summaries/run_date=<date>.json        the job's summary

A job writes to `_staging`, then, holding the date's lock, moves the live partition to
`_trash` and the staged one into place. A crash before the swap leaves the old partition
untouched; a crash between the two renames is repaired by the next commit of that date.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from fakeface.errors import FakefaceError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class HadoopFS:
    """The few file-system calls the jobs need, through Spark's Hadoop client."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._root = jvm.org.apache.hadoop.fs.Path(qualify(root))
        self._fs = self._root.getFileSystem(conf)

    def path(self, *parts: str) -> Any:
        """A Hadoop Path below the root."""
        p = self._root
        for part in parts:
            p = self._jvm.org.apache.hadoop.fs.Path(p, part)
        return p

    def exists(self, *parts: str) -> bool:
        return bool(self._fs.exists(self.path(*parts)))

    def mkdirs(self, *parts: str) -> None:
        self._fs.mkdirs(self.path(*parts))

    def rename(self, src: tuple[str, ...], dst: tuple[str, ...]) -> None:
        if not self._fs.rename(self.path(*src), self.path(*dst)):
            raise FakefaceError(f"could not rename {'/'.join(src)} to {'/'.join(dst)}")

    def delete(self, *parts: str) -> None:
        self._fs.delete(self.path(*parts), True)

    def list_names(self, *parts: str) -> list[str]:
        if not self.exists(*parts):
            return []
        return [s.getPath().getName() for s in self._fs.listStatus(self.path(*parts))]

    def create_new(self, text: str, *parts: str) -> bool:
        """Create a file with `text` only if absent (atomic on local and HDFS); True if created."""
        if self._fs.getScheme() == "file":
            # Hadoop's local createNewFile checks, then opens without O_EXCL: two processes
            # can both "create" the file. A hard link is atomic and the text is already in.
            return _create_new_local(str(self.path(*parts).toUri().getPath()), text)
        try:
            if not self._fs.createNewFile(self.path(*parts)):
                return False
        except Exception:  # py4j wraps FileAlreadyExistsException
            return False
        self.write_text(text, *parts)
        return True

    def read_text(self, *parts: str) -> str:
        stream = self._fs.open(self.path(*parts))
        try:
            reader = self._jvm.java.io.BufferedReader(
                self._jvm.java.io.InputStreamReader(stream, "UTF-8")
            )
            lines = []
            line = reader.readLine()
            while line is not None:
                lines.append(line)
                line = reader.readLine()
            return "\n".join(lines)
        finally:
            stream.close()

    def write_text(self, text: str, *parts: str) -> None:
        stream = self._fs.create(self.path(*parts), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()


def _create_new_local(path: str, text: str) -> bool:
    """Atomically create `path` holding `text`; False when it already exists."""
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
    try:
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: O_EXCL, then the text
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True
    finally:
        os.unlink(temp)


def qualify(path: str) -> str:
    """A local path as an absolute file: URI; URIs pass through."""
    if "://" in path or path.startswith("file:"):
        return path
    return "file://" + os.path.abspath(path)


def partition_name(run_date: str) -> str:
    """`run_date=YYYY-MM-DD`."""
    return f"run_date={run_date}"


class PartitionLock:
    """A per-date lock file; a stale lock of a dead process on this host is broken."""

    def __init__(self, fs: HadoopFS, run_date: str, timeout_s: float = 600.0) -> None:
        self._fs = fs
        self._parts = ("_locks", f"{partition_name(run_date)}.lock")
        self._timeout_s = timeout_s
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def __enter__(self) -> PartitionLock:
        self._fs.mkdirs("_locks")
        deadline = time.monotonic() + self._timeout_s
        while not self._fs.create_new(self._owner, *self._parts):
            if self._is_stale():
                log.warning("breaking stale lock %s", "/".join(self._parts))
                self._fs.delete(*self._parts)
                continue
            if time.monotonic() > deadline:
                raise FakefaceError(
                    f"another run holds {'/'.join(self._parts)}; wait for it or remove the"
                    " lock if that run is dead"
                )
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._fs.delete(*self._parts)

    def _is_stale(self) -> bool:
        try:
            host, pid, _ = self._fs.read_text(*self._parts).split(":", 2)
        except Exception:
            return False  # being written right now, or just released
        if host != socket.gethostname():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
        return False


def stage_dataframe(
    df: DataFrame, output_path: str, run_date: str, compression: str | None = None
) -> str:
    """Write `df` under `_staging/` and return the staged folder's name.

    `compression`: the Parquet codec (none, snappy, lz4, zstd, ...); None: Spark's setting.
    """
    name = staged_name(run_date)
    writer = df.write.mode("error")
    if compression is not None:
        writer = writer.option("compression", compression)
    writer.parquet(qualify(output_path.rstrip("/") + f"/_staging/{name}"))
    return name


def staged_name(run_date: str) -> str:
    """A fresh name for a staged folder of `run_date` (under `_staging/`)."""
    return f"{run_date}-{uuid.uuid4().hex[:12]}"


def staged_uri(output_path: str, staged: str) -> str:
    """URI of a staged folder, to read it back before commit."""
    return qualify(output_path.rstrip("/") + f"/_staging/{staged}")


def _trash_name(run_date: str) -> str:
    """`<date>-<ns since epoch, 20 digits>-<random>`: newer sorts last."""
    return f"{run_date}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _trash_order(name: str) -> tuple[bool, str]:
    # Names without the time stamp were written by older code: they are the oldest.
    stamp = name.split("-")[3:4]
    return (bool(stamp) and len(stamp[0]) == 20 and stamp[0].isdigit(), name)


def repair_partition(fs: HadoopFS, run_date: str) -> None:
    """Undo a commit cut between its two renames: restore the newest trashed partition.

    When the live partition exists, trashed copies of the date are stale (a commit cut
    after its second rename) and are deleted, so that a later repair cannot restore them.
    """
    live = partition_name(run_date)
    trashed = sorted(
        (n for n in fs.list_names("_trash") if n.startswith(run_date + "-")), key=_trash_order
    )
    if fs.exists(live):
        for name in trashed:
            log.warning("deleting stale _trash/%s", name)
            fs.delete("_trash", name)
        return
    if trashed:
        log.warning("restoring %s from an interrupted commit (_trash/%s)", live, trashed[-1])
        fs.rename(("_trash", trashed[-1]), (live,))
        for name in trashed[:-1]:
            fs.delete("_trash", name)


def commit_partition(
    spark: SparkSession,
    output_path: str,
    staged: str,
    run_date: str,
    summary: dict | None = None,
) -> None:
    """Swap the staged folder in as `run_date=<date>`, under the date's lock.

    `summary`, when given, is written to `_summaries/` under the same lock, so that it
    always describes the partition that is live.
    """
    fs = HadoopFS(spark, output_path)
    live = partition_name(run_date)
    with PartitionLock(fs, run_date):
        repair_partition(fs, run_date)
        fs.mkdirs("_trash")
        trash_name = _trash_name(run_date)
        if fs.exists(live):
            fs.rename((live,), ("_trash", trash_name))
        try:
            if fs.exists(live):  # a rename onto a folder would move the data inside it
                raise FakefaceError(f"{live} came back during the commit; another writer?")
            fs.rename(("_staging", staged), (live,))
        except Exception:
            if fs.exists("_trash", trash_name) and not fs.exists(live):
                fs.rename(("_trash", trash_name), (live,))  # put the old partition back
            raise
        fs.delete("_trash", trash_name)
        if summary is not None:
            write_summary(spark, output_path, run_date, summary)
    clean_stale_staging(fs, run_date, keep=staged)


def clean_stale_staging(fs: HadoopFS, run_date: str, keep: str = "") -> None:
    """Remove staged folders of this date left by killed runs (older than an hour)."""
    for name in fs.list_names("_staging"):
        if name.startswith(run_date + "-") and name != keep:
            status = fs._fs.getFileStatus(fs.path("_staging", name))
            if time.time() * 1000 - status.getModificationTime() > 3_600_000:
                fs.delete("_staging", name)


def write_summary(spark: SparkSession, output_path: str, run_date: str, summary: dict) -> str:
    """Write the job summary as JSON under `_summaries/`; return its location."""
    fs = HadoopFS(spark, output_path)
    fs.mkdirs("_summaries")
    name = f"{partition_name(run_date)}.json"
    fs.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str), "_summaries", name)
    return summary_location(output_path, run_date)


def summary_location(output_path: str, run_date: str) -> str:
    """Where `write_summary` puts the summary of `run_date`."""
    return output_path.rstrip("/") + f"/_summaries/{partition_name(run_date)}.json"
