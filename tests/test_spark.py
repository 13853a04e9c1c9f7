"""Driver-side checks of the packed environment a cluster config ships (no cluster needed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

from fakeface.config import load_config
from fakeface.errors import FakefaceError
from fakeface.spark import (
    archive_python,
    check_archives,
    parse_archives,
    resolved_conf,
    submit_options,
)
from tests.conftest import PROJECT_ROOT

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
ENV_PYTHON = "./environment/bin/python"


def fake_env_archive(path: Path, python: str = HERE, *, pyvenv: bool = True) -> Path:
    """A tiny tar.gz in venv-pack's layout: pyvenv.cfg, lib/pythonX.Y/..., bin/python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("share/doc.txt", b"first, as venv-pack's own order may put it")
        if pyvenv:
            add("pyvenv.cfg", f"home = /usr/bin\nversion = {python}.1\n".encode())
        add(f"lib/python{python}/site-packages/fakeface/__init__.py", b"")
        add("bin/python", b"#!/bin/sh\n")
    return path


def cluster_cfg(tmp_path: Path, conf: dict[str, str]):
    """conf/cluster.yaml with some spark.conf entries replaced, rooted at `tmp_path`."""
    lines = "".join(f"    {key}: {value}\n" for key, value in conf.items())
    return load_config(write_conf(tmp_path, f"spark:\n  conf:\n{lines}"), project_root=tmp_path)


def test_cluster_yaml_ships_exactly_what_make_package_builds() -> None:
    cfg = load_config(PROJECT_ROOT / "conf" / "cluster.yaml")
    (archive,) = parse_archives(resolved_conf(cfg)["spark.archives"])
    assert Path(archive.uri) == PROJECT_ROOT / "dist" / f"fakeface-{version('fakeface')}-env.tar.gz"
    assert archive.alias == "environment"
    assert cfg.spark.conf["spark.pyspark.python"] == "./environment/bin/python"
    assert cfg.spark.submit_args == []  # no --py-files: nothing else to build
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "ENV_ARCHIVE := dist/fakeface-$(VERSION)-env.tar.gz" in makefile


def test_archive_paths_are_rooted_at_the_project_and_remote_ones_kept() -> None:
    archives = parse_archives("dist/a.tar.gz#environment, hdfs:///envs/b.tar.gz,/abs/c.tgz", "/p")
    assert [(a.uri, a.alias) for a in archives] == [
        ("/p/dist/a.tar.gz", "environment"),
        ("hdfs:///envs/b.tar.gz", "b.tar.gz"),
        ("/abs/c.tgz", "c.tgz"),
    ]
    assert archives[1].local_path is None
    assert parse_archives("file:///x/e.tar.gz#env")[0].local_path == Path("/x/e.tar.gz")
    assert parse_archives("file:/x/e.tar.gz#env")[0].local_path == Path("/x/e.tar.gz")


def test_a_good_archive_passes_and_its_python_is_read_from_the_first_entries(tmp_path):
    path = fake_env_archive(tmp_path / "env.tar.gz")
    assert archive_python(path) == sys.version_info[:2]
    conf = {"spark.archives": f"{path}#environment", "spark.pyspark.python": ENV_PYTHON}
    assert [a.alias for a in check_archives(conf)] == ["environment"]
    # Without pyvenv.cfg the lib/pythonX.Y folder tells.
    assert (
        archive_python(fake_env_archive(tmp_path / "b.tar.gz", pyvenv=False))
        == (sys.version_info[:2])
    )


def _tar_of(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(b"not a tarball")
    return path


BAD_ARCHIVES = {
    "missing": (lambda d: d / "missing.tar.gz", "does not exist; build it with `make package`"),
    "other-python": (
        lambda d: fake_env_archive(d / "old.tar.gz", "3.10"),
        "holds a Python 3.10 environment",
    ),
    "not-a-tarball": (lambda d: _junk(d / "junk.tar.gz"), "is not a readable tar.gz"),
    "not-an-env": (
        lambda d: _tar_of(d / "readme.tar.gz", {"README": b"hi"}),
        "is not a packed Python environment",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archives_are_one_line(tmp_path: Path, case: str) -> None:
    make, needle = BAD_ARCHIVES[case]
    path = make(tmp_path)
    with pytest.raises(FakefaceError) as info:
        check_archives({"spark.archives": f"{path}#environment"})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_python_in_a_folder_no_archive_unpacks_to_is_refused(tmp_path: Path) -> None:
    path = fake_env_archive(tmp_path / "env.tar.gz")
    conf = {"spark.archives": f"{path}#venv", "spark.pyspark.python": ENV_PYTHON}
    with pytest.raises(FakefaceError) as info:
        check_archives(conf)
    assert "no archive in spark.archives unpacks to 'environment'" in str(info.value)
    check_archives({"spark.pyspark.python": "/usr/bin/python3.11"})  # absolute: not ours to check


def test_submit_options_client_mode_keeps_the_driver_on_this_python(tmp_path: Path) -> None:
    path = fake_env_archive(tmp_path / "dist" / "env.tar.gz")
    archive = {"spark.archives": "dist/env.tar.gz#environment"}
    client = cluster_cfg(tmp_path, {**archive, "spark.submit.deployMode": "client"})
    opts = submit_options(client, "/opt/venv/bin/python")
    confs = [opts[i + 1] for i, o in enumerate(opts) if o == "--conf"]
    assert f"spark.archives={path}#environment" in confs  # rooted at the project
    assert "spark.pyspark.python=./environment/bin/python" in confs
    assert "spark.pyspark.driver.python=/opt/venv/bin/python" in confs
    assert opts[:4] == ["--master", "yarn", "--driver-memory", "8g"]
    # Cluster mode: the driver runs in the cluster, from the archive too.
    cluster = cluster_cfg(tmp_path, archive)
    assert not any("driver.python" in o for o in submit_options(cluster, "/opt/venv/bin/python"))


def run_nightly(tmp_path: Path, conf: Path, unset: tuple[str, ...] = ()):
    (tmp_path / "drops" / "2026-05-01").mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "CONF": str(conf),
        "DROP_ROOT": str(tmp_path / "drops"),
        "LAKE_ROOT": str(tmp_path / "lake"),
        "PYTHON": sys.executable,
        "SPARK_SUBMIT": "/bin/false",  # reaching spark-submit at all would be the bug
    }
    return subprocess.run(
        ["bash", str(PROJECT_ROOT / "jobs" / "nightly.sh"), "2026-05-01"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def write_conf(tmp_path: Path, text: str, beside: bool = True) -> Path:
    """A config extending conf/cluster.yaml: a copy beside it (as a cluster driver gets them),
    or, with beside=False, the checkout's by its absolute path."""
    conf = tmp_path / "conf" / "night.yaml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    parent = PROJECT_ROOT / "conf" / "cluster.yaml"
    if beside:
        for name in ("base.yaml", "cluster.yaml"):
            (conf.parent / name).write_text((PROJECT_ROOT / "conf" / name).read_text())
        parent = Path("cluster.yaml")
    conf.write_text(f"extends: {parent}\n{text}")
    return conf


def nightly_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert "nightly 2026-05-01: ingest" not in result.stdout  # nothing was submitted
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_nightly_with_a_missing_archive_is_one_line_before_any_submit(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "")  # cluster.yaml's dist/ path, rooted at tmp_path: absent
    line = nightly_error(run_nightly(tmp_path, conf))
    assert f"{tmp_path / 'dist'}" in line and "make package" in line


def test_nightly_with_an_archive_for_another_python_is_one_line(tmp_path: Path) -> None:
    fake_env_archive(tmp_path / "dist" / "old.tar.gz", "3.10")
    conf = write_conf(
        tmp_path, "spark:\n  conf:\n    spark.archives: dist/old.tar.gz#environment\n"
    )
    line = nightly_error(run_nightly(tmp_path, conf))
    assert f"Python 3.10 environment but this driver runs Python {HERE}" in line


def test_nightly_with_the_cluster_tracking_server_unreachable_is_one_line(tmp_path: Path) -> None:
    fake_env_archive(tmp_path / "dist" / f"fakeface-{version('fakeface')}-env.tar.gz")
    conf = write_conf(tmp_path, "")  # cluster.yaml's own tracking server, which is not there
    line = nightly_error(run_nightly(tmp_path, conf, unset=("MLFLOW_TRACKING_URI",)))
    assert "https://mlflow.example.com is unreachable" in line


def test_cluster_mode_ships_the_config_chain_and_the_job_reads_it_by_name(tmp_path: Path) -> None:
    from fakeface.spark import job_config_arg

    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    for name in ("base.yaml", "cluster.yaml"):
        (conf_dir / name).write_text((PROJECT_ROOT / "conf" / name).read_text())
    fake_env_archive(tmp_path / "dist" / f"fakeface-{version('fakeface')}-env.tar.gz")
    path = conf_dir / "cluster.yaml"
    cfg = load_config(path)
    opts = submit_options(cfg, "/opt/venv/bin/python", path)
    assert opts[opts.index("--files") + 1] == f"{path},{conf_dir / 'base.yaml'}"
    assert job_config_arg(cfg, path) == "cluster.yaml"
    # A chain that names a file elsewhere cannot be shipped flat: one line.
    nested = write_conf(tmp_path / "other", "", beside=False)
    with pytest.raises(FakefaceError) as info:
        submit_options(load_config(nested, project_root=tmp_path), "/x/python", nested)
    assert "must name a file beside it" in str(info.value) and "\n" not in str(info.value)


def test_standalone_yaml_is_cluster_yaml_in_client_mode_with_its_archive() -> None:
    cfg = load_config(PROJECT_ROOT / "conf" / "standalone.yaml")
    conf = resolved_conf(cfg)
    assert cfg.spark.master.startswith("spark://")
    assert conf["spark.submit.deployMode"] == "client"
    (archive,) = parse_archives(conf["spark.archives"])
    assert Path(archive.uri) == PROJECT_ROOT / "dist" / f"fakeface-{version('fakeface')}-env.tar.gz"
    assert conf["spark.pyspark.python"] == ENV_PYTHON


def test_an_archive_older_than_the_checkouts_sources_is_refused(tmp_path: Path) -> None:
    """Same version number, other code: the executors would run what the driver no longer is."""
    path = fake_env_archive(tmp_path / "env.tar.gz")
    os.utime(path, (0, 0))
    with pytest.raises(FakefaceError) as info:
        check_archives({"spark.archives": f"{path}#environment"})
    assert "is older than" in str(info.value) and "make package" in str(info.value)
    assert "\n" not in str(info.value)


def test_reader_batches_are_capped_by_pixel_bytes(spark) -> None:
    from fakeface.spark import limit_reader_batch

    try:
        assert limit_reader_batch(spark, 600) == 15  # 16 MiB of 1.08 MB rows
        assert spark.conf.get("spark.sql.parquet.columnarReaderBatchSize") == "15"
        assert limit_reader_batch(spark, 32) == 4096  # small rows: Spark's own default
        assert limit_reader_batch(spark, 20000) == 4  # never fewer than 4 rows
    finally:
        spark.conf.set("spark.sql.parquet.columnarReaderBatchSize", "4096")


def test_sessions_read_lake_rows_in_batches_sized_for_the_ingest_size(spark) -> None:
    from fakeface.spark import READER_BATCH_KEY, build_spark_session, reader_batch_rows

    assert reader_batch_rows(600) == 15 and reader_batch_rows(160) == 218
    before = spark.conf.get(READER_BATCH_KEY)
    try:  # getOrCreate hands back the running session with the SQL settings applied
        cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml", ["ingest.image_size=600"])
        session = build_spark_session(cfg, "reader-batch")
        assert session.conf.get(READER_BATCH_KEY) == "15"
    finally:
        spark.conf.set(READER_BATCH_KEY, before)
