"""The notebooks run top to bottom against a small demo, and `fakeface report` works on its run.

One module-scoped demo (`bash jobs/demo.sh` on DEMO_IMAGES images) feeds every test here. It
runs in a temporary folder with its own config (`extends` conf/demo.yaml; relative paths, so the
MLflow artifacts and the petastorm cache, land in the temporary folder) and its own SQLite store:
the session store of tests/conftest.py is shared with other tests, whose runs and champion would
otherwise show up in the notebooks.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
DEMO_IMAGES = 48
DEMO_TIMEOUT_S = 900
CELL_TIMEOUT_S = 600
KERNEL = "python3"

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run the demo once on a small preset; return its folder, config, env and train run id."""
    root = tmp_path_factory.mktemp("notebooks")
    conf = root / "conf" / "demo.yaml"
    conf.parent.mkdir()
    conf.write_text(f"extends: {PROJECT_ROOT / 'conf' / 'demo.yaml'}\n")
    demo_dir = root / "demo"
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {
        **os.environ,
        "DEMO_DIR": str(demo_dir),
        "DEMO_IMAGES": str(DEMO_IMAGES),
        "DEMO_CONF": str(conf),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", "jobs/demo.sh"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, (
        f"demo failed (exit {proc.returncode}) after {seconds:.0f} s:\n"
        f"{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
    )
    summaries = sorted((demo_dir / "scores" / "_summaries").glob("run_date=*.json"))
    assert summaries, f"demo wrote no scoring summary:\n{_tail(proc.stdout)}"
    summary = json.loads(summaries[-1].read_text())
    return {
        "root": root,
        "conf": conf,
        "dir": demo_dir,
        "env": env,
        "stdout": proc.stdout,
        "summary": summary,
        "train_run_id": _train_run_id(tracking_uri),
        "seconds": seconds,
    }


def _train_run_id(tracking_uri: str) -> str:
    """The demo's training run, read from its own store (no global MLflow state touched)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("fakeface")
    assert experiment is not None, "the demo created no 'fakeface' experiment"
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.job = 'train'", max_results=10
    )
    trained = [r for r in runs if r.info.run_name.startswith("train-") and r.data.metrics]
    assert trained, "the demo logged no train-<variant> run"
    return trained[0].info.run_id


def test_demo_prints_its_summary(demo: dict) -> None:
    stdout = demo["stdout"]
    assert "== [" in stdout and "6/6 done" in stdout
    assert re.search(r"^score \d{4}-\d{2}-\d{2}: model=\S+ v\d+ .*rows=\d+", stdout, re.M), stdout
    assert "Scored partition:" in stdout and "Run summary (JSON):" in stdout
    summary = demo["summary"]
    # Tonight's drop holds a few broken files; rows out == files in.
    assert summary["n_images"] == len(list((demo["dir"] / "drop").iterdir()))
    assert summary["n_errors"] >= 1 and summary["counts"]["ok"] >= 1
    assert list((demo["dir"] / "scores").glob("run_date=*/*.parquet"))


def test_kernel_runs_this_interpreter(demo: dict) -> None:
    """`python3` must start the venv's ipykernel (make install: ipykernel install --sys-prefix)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, fakeface; print(sys.prefix)")]
    _execute(nb, demo["env"], PROJECT_ROOT)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert Path(printed).resolve() == Path(sys.prefix).resolve(), (
        f"kernel {KERNEL!r} runs the interpreter in {printed}, not {sys.prefix}: run `make install`"
        " (it registers the venv's kernel with `ipykernel install --sys-prefix`)"
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(demo: dict, name: str) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    started = time.monotonic()
    _execute(nb, demo["env"], PROJECT_ROOT)
    seconds = time.monotonic() - started
    nbformat.write(nb, demo["root"] / f"executed_{name}")  # kept for a look when a check fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert pictures, f"{name} drew no figure"
    first = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert str(Path(demo["dir"]).resolve()) in first, f"{name} did not read DEMO_DIR: {first!r}"
    assert seconds < CELL_TIMEOUT_S


def test_nbconvert_command_from_notebooks_folder(demo: dict, tmp_path: Path) -> None:
    """The command demo.sh prints: nbconvert starts the kernel in notebooks/, the notebook copes."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
            f"--ExecutePreprocessor.kernel_name={KERNEL}",
            f"--ExecutePreprocessor.timeout={CELL_TIMEOUT_S}",
            "--output-dir", str(tmp_path), "notebooks/01_eda.ipynb",
        ],
        cwd=PROJECT_ROOT, env=demo["env"], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, _tail(proc.stderr)
    assert (tmp_path / "01_eda.ipynb").is_file()
    assert not list(NOTEBOOK_DIR.glob("*.nbconvert.ipynb"))


def test_report_of_the_demo_run_embeds_a_png(demo: dict) -> None:
    out = demo["root"] / "report.html"
    script = Path(sys.executable).with_name("fakeface")
    command = [str(script)] if script.is_file() else [sys.executable, "-c", _CLI]
    proc = subprocess.run(
        [*command, "report", "--run-id", demo["train_run_id"], "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=demo["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match, "the report embeds no PNG"
    assert base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert demo["train_run_id"] in page


_CLI = "import sys; from fakeface.console import main; sys.exit(main(sys.argv[1:]))"


def _execute(nb: object, env: dict[str, str], cwd: Path) -> None:
    """Run a notebook in a fresh `python3` kernel started with `env` in `cwd`."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)
