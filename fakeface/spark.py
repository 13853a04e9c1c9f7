"""Building the SparkSession the same way for every job and test.

On a cluster the executors run the Python of a packed environment (`make package`):
`spark.archives` ships `dist/fakeface-<version>-env.tar.gz#environment` and
`spark.pyspark.python` names `./environment/bin/python`. The driver checks that archive
(there, readable, built for its own Python) before any work is submitted.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakeface.errors import FakefaceError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from fakeface.config import Config


def check_java() -> None:
    """Fail with one line, not a Py4J traceback, when no Java runtime is installed."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise FakefaceError(
        "Java not found: Spark needs Java 17 (e.g. `apt-get install openjdk-17-jre-headless`)"
        " on PATH or in JAVA_HOME"
    )


def ensure_worker_python() -> None:
    """Spark's Python workers must run this interpreter, where fakeface is installed."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


ARCHIVE_KEYS = ("spark.archives", "spark.yarn.dist.archives")
PYTHON_KEY = "spark.pyspark.python"
DRIVER_PYTHON_KEY = "spark.pyspark.driver.python"
_PYVENV_VERSION = re.compile(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", re.MULTILINE)
_LIB_PYTHON = re.compile(r"^(?:\./)?lib/python(\d+)\.(\d+)/")


@dataclass(frozen=True)
class Archive:
    """One `spark.archives` entry: where it is, and the folder executors unpack it to."""

    uri: str
    alias: str

    @property
    def local_path(self) -> Path | None:
        """The file on this machine, or None for a remote URI (hdfs://, s3a://, ...)."""
        if self.uri.startswith("file:"):
            return Path(re.sub(r"^file:(//)?", "", self.uri))
        return None if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", self.uri) else Path(self.uri)


def parse_archives(value: str, root: str | Path = ".") -> list[Archive]:
    """`a.tar.gz#env,hdfs:///b.zip` -> archives; relative local paths are rooted at `root`."""
    archives = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        path, _, alias = item.partition("#")
        archive = Archive(path, alias)
        local = archive.local_path
        if local is not None and not local.is_absolute():
            path = str(Path(root) / local)
        archives.append(Archive(path, alias or Path(path).name))
    return archives


def format_archives(archives: list[Archive]) -> str:
    """The inverse of parse_archives, every entry with its folder name."""
    return ",".join(f"{a.uri}#{a.alias}" for a in archives)


def archive_python(path: Path) -> tuple[int, int]:
    """The Python (major, minor) a venv-pack archive was built for, read from its first entries.

    venv-pack writes `pyvenv.cfg` among its first entries, so this reads a few kilobytes,
    not the whole archive.
    """
    label = f"archive {path}"
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for i, member in enumerate(tar):
                name = member.name.removeprefix("./")
                if name == "pyvenv.cfg" and member.isfile():
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8", "replace") if handle else ""
                    if found := _PYVENV_VERSION.search(text):
                        return int(found[1]), int(found[2])
                elif found := _LIB_PYTHON.match(name):
                    return int(found[1]), int(found[2])
                if i >= 5000:
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise FakefaceError(
            f"{label} is not a readable tar.gz ({exc}); rebuild it with `make package`"
        ) from None
    raise FakefaceError(
        f"{label} is not a packed Python environment (no pyvenv.cfg or lib/pythonX.Y at its"
        " top); build one with `make package`"
    )


def check_archives(conf: dict[str, str], root: str | Path = ".") -> list[Archive]:
    """Refuse, in one line, archives that are missing or built for another Python.

    Also refuses a relative `spark.pyspark.python` (`./environment/bin/python`) whose folder
    no archive unpacks to. Remote archives are left to Spark. Returns the archives.
    """
    archives = [a for key in ARCHIVE_KEYS for a in parse_archives(conf.get(key, ""), root)]
    here = sys.version_info[:2]
    for archive in archives:
        path = archive.local_path
        if path is None:
            continue
        if not path.is_file():
            raise FakefaceError(
                f"spark.archives names {path}, which does not exist; build it with"
                " `make package` (or fix the path in the config)"
            )
        check_fresh(path)
        built_for = archive_python(path)
        if built_for != here:
            raise FakefaceError(
                f"archive {path} holds a Python {built_for[0]}.{built_for[1]} environment but"
                f" this driver runs Python {here[0]}.{here[1]}; rebuild it with `make package`"
                f" from a Python {here[0]}.{here[1]} venv"
            )
    python = Path(conf.get(PYTHON_KEY, ""))
    if not python.is_absolute() and len(python.parts) > 1:  # ./environment/bin/python
        folder = python.parts[0]
        if folder not in {a.alias for a in archives}:
            names = ", ".join(sorted(a.alias for a in archives)) or "none"
            raise FakefaceError(
                f"spark.pyspark.python is {python}, but no archive in spark.archives unpacks to"
                f" {folder!r} (folders: {names}); add `dist/...-env.tar.gz#{folder}`"
            )
    return archives


def check_fresh(archive: Path) -> None:
    """Refuse an archive older than the checkout's fakeface sources this driver runs.

    Executors would import the archive's (older) fakeface while the driver runs the new one:
    same version number, other code. Checked only when the driver runs from a checkout.
    """
    import fakeface

    package = Path(fakeface.__file__).resolve().parent
    checkout = package.parent
    if not (checkout / "setup.py").is_file():
        return
    built = archive.stat().st_mtime
    sources = [checkout / "setup.py", *package.rglob("*.py")]
    newer = [p for p in sources if p.stat().st_mtime > built]
    if newer:
        newest = max(newer, key=lambda p: p.stat().st_mtime)
        raise FakefaceError(
            f"archive {archive} is older than {newest.relative_to(checkout)} (and"
            f" {len(newer) - 1} more): executors would run other code than this driver;"
            " rebuild it with `make package`"
        )


def resolved_conf(cfg: Config) -> dict[str, str]:
    """The config's spark.* settings with archive paths made absolute against the project."""
    conf = dict(cfg.spark.conf)
    for key in ARCHIVE_KEYS:
        if conf.get(key):
            conf[key] = format_archives(parse_archives(conf[key], cfg.project_root))
    return conf


def submit_options(
    cfg: Config, driver_python: str, config_path: str | Path | None = None
) -> list[str]:
    """spark-submit's options for a config (one per item), its archives checked first.

    In client mode the driver runs `driver_python` here while executors run the archive's
    `spark.pyspark.python` (which spark-submit would otherwise use for the driver too). In
    cluster mode the driver runs in the cluster: `config_path` and the files it extends are
    shipped with --files, so the job reads them by name (`job_config_arg`).
    """
    conf = resolved_conf(cfg)
    check_archives(conf, cfg.project_root)
    opts = ["--master", cfg.spark.master, "--driver-memory", cfg.spark.driver_memory]
    if not is_cluster_mode(conf):
        if conf.get(PYTHON_KEY) and DRIVER_PYTHON_KEY not in conf:
            conf[DRIVER_PYTHON_KEY] = driver_python
    elif config_path is not None:
        opts += ["--files", ",".join(str(p) for p in shipped_config_files(config_path))]
    for key, value in conf.items():
        opts += ["--conf", f"{key}={value}"]
    return opts + list(cfg.spark.submit_args)


def is_cluster_mode(conf: dict[str, str]) -> bool:
    """True when the driver runs inside the cluster (spark.submit.deployMode=cluster)."""
    return conf.get("spark.submit.deployMode", "client") == "cluster"


def shipped_config_files(config_path: str | Path) -> list[Path]:
    """The config chain to ship to a cluster driver, where the files land side by side."""
    import yaml

    from fakeface.config import config_files

    files = config_files(config_path)
    names = [p.name for p in files]
    for path in files:
        parent = (yaml.safe_load(path.read_text()) or {}).get("extends")
        if parent and Path(parent).name != parent:
            raise FakefaceError(
                f"config {path} extends {parent!r}: in cluster deploy mode the config files are"
                " shipped into one folder, so `extends:` must name a file beside it"
            )
    if len(set(names)) != len(names):
        raise FakefaceError(
            f"config {config_path} extends files with the same name ({', '.join(names)}):"
            " in cluster deploy mode they are shipped into one folder; rename them"
        )
    return files


def job_config_arg(cfg: Config, config_path: str | Path) -> str:
    """What the job's --conf says: the shipped file's name in cluster mode, else the path."""
    return Path(config_path).name if is_cluster_mode(resolved_conf(cfg)) else str(config_path)


def _submitted_conf() -> dict[str, str]:
    """What spark-submit set (--conf, --archives, ...), read from the driver's JVM."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def build_spark_session(cfg: Config, app_suffix: str = "") -> SparkSession:
    """The session for a job; under spark-submit, settings given there win over the config."""
    check_java()
    conf = resolved_conf(cfg)
    submitted = _submitted_conf() if _launched_by_spark_submit() else {}
    effective = {**conf, **submitted}
    for key in ARCHIVE_KEYS:  # spark-submit's relative paths are relative to where it ran
        if submitted.get(key):
            effective[key] = format_archives(parse_archives(submitted[key], os.getcwd()))
    # In cluster deploy mode this driver runs inside the cluster, where the archive was
    # already shipped (and the submitting machine's path means nothing): nothing to check.
    if not is_cluster_mode(effective):
        check_archives(effective, cfg.project_root)
    python = submitted.get(PYTHON_KEY) or conf.get(PYTHON_KEY)
    if python:  # executors start the archive's Python; Spark reads it from the environment
        os.environ["PYSPARK_PYTHON"] = python
    ensure_worker_python()
    from pyspark.sql import SparkSession

    name = cfg.spark.app_name + (f"-{app_suffix}" if app_suffix else "")
    builder = SparkSession.builder.appName(name)
    # spark-submit sets spark.master itself; only a plain `python jobs/x.py` needs ours.
    if "SPARK_SUBMIT_OPTS" not in os.environ and not _launched_by_spark_submit():
        builder = builder.master(cfg.spark.master)
        builder = builder.config("spark.driver.memory", cfg.spark.driver_memory)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
    builder = builder.config("spark.sql.files.maxPartitionBytes", cfg.ingest.max_partition_bytes)
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    # Every job that reads the lake (train, promote, score, notebooks) reads rows of
    # ingest.image_size px: batches sized for them unless spark.conf says otherwise.
    builder = builder.config(READER_BATCH_KEY, str(reader_batch_rows(cfg.ingest.image_size)))
    for key, value in conf.items():
        if key not in submitted:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def executor_environments(spark: SparkSession, tasks: int = 0) -> list[dict[str, Any]]:
    """What the executors' Python workers run: one dict per distinct (host, prefix) seen.

    Each task imports fakeface and TensorFlow's metadata, as the jobs' UDFs do.
    """
    sc = spark.sparkContext
    n = tasks or max(sc.defaultParallelism, 1)
    try:
        rows = sc.parallelize(range(n), n).mapPartitions(_describe_worker).collect()
    except Exception as exc:  # Py4JJavaError wrapping the executors' Python traceback
        errors = re.findall(r"^(\w+(?:Error|Exception): .+)$", str(exc), re.MULTILINE)
        raise FakefaceError(
            "executors cannot run fakeface: "
            + (errors[-1] if errors else str(exc).splitlines()[0])[:300]
            + "; ship the packed environment (spark.archives, spark.pyspark.python)"
        ) from None
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault((row["host"], row["prefix"]), row)
    return sorted(seen.values(), key=lambda r: (r["host"], r["prefix"]))


def _describe_worker(_: Any) -> Any:
    import platform
    import socket
    from importlib.metadata import PackageNotFoundError, version

    import fakeface

    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = None
    yield {
        "host": socket.gethostname(),
        "prefix": sys.prefix,
        "executable": sys.executable,
        "python": platform.python_version(),
        "fakeface": fakeface.__file__,
        "fakeface_version": version("fakeface"),
        "tensorflow": tf_version,
        "cwd": os.getcwd(),
    }


def _launched_by_spark_submit() -> bool:
    # spark-submit starts the driver with the py4j gateway already listening.
    return "PYSPARK_GATEWAY_PORT" in os.environ


READER_BATCH_BYTES = 16 << 20  # pixels per vectorized Parquet batch while materialising
READER_BATCH_KEY = "spark.sql.parquet.columnarReaderBatchSize"


def limit_reader_batch(spark: SparkSession, image_size: int) -> int:
    """Cap Spark's vectorized Parquet batches at READER_BATCH_BYTES of pixels; the rows.

    Training materialises the lake through the JVM, and scoring an ingested dataset reads it
    there too. Spark's default 4096-row batches hold a whole 256 MB file per task at 600 px
    (1.08 MB a row): under `spark-submit` without --driver-memory (a 1 GiB heap) the
    training job ran out of heap reading the lake.
    """
    rows = reader_batch_rows(image_size)
    spark.conf.set(READER_BATCH_KEY, str(rows))
    return rows


def reader_batch_rows(image_size: int) -> int:
    """Rows of `image_size` px pixels in READER_BATCH_BYTES (4 to Spark's default 4096)."""
    row_bytes = max(1, image_size * image_size * 3)
    return int(min(4096, max(4, READER_BATCH_BYTES // row_bytes)))
