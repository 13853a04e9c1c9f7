"""The registered model as a product of its own: bytes in, the nightly job's row out.

The pyfunc core on a tiny in-memory model (no MLflow), then one model trained and registered
by the training job, promoted to champion, and used three ways on the same night's files: the
nightly job, `mlflow.pyfunc.load_model` and `mlflow models serve`. The last two run in a
Python that cannot see this checkout, pyspark or petastorm (a `sitecustomize` hides them), as
in a venv made from the model's own requirements.txt: whatever they import comes from the
model folder. (`make bench-serve` builds that venv for real; tests have no network.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fakeface.errors import ModelError
from fakeface.outputs import PART_COLUMNS
from tests.conftest import PROJECT_ROOT, encode
from tests.faults import free_port
from tests.test_train import ingested, train_cfg  # noqa: F401  (32 images at 48 px)

# The part model's columns of a served row, after image_id, p_fake, is_fake, status, error.
PART_ROW = ["p_left_eye", "p_right_eye", "p_nose", "p_mouth", "face_found", "parts_flagged"]
MODEL_NAME = "served"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
RUN_DATE = "2026-03-01"

# Imported by every Python started below: the checkout's fakeface (the editable install and
# the project folder), pyspark and petastorm become unimportable, like in a venv made from
# the model's requirements.txt.
SITECUSTOMIZE = """
import importlib.abc
import os
import sys

ABSENT = {"pyspark", "petastorm"}
PROJECT = %r


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None


sys.meta_path[:] = [
    f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")
]
sys.meta_path.insert(0, _Absent())
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != PROJECT]
"""

# --------------------------------------------------------------------------- the core


def tiny_settings(threshold: float = 0.5, size: int = 32):
    from fakeface.serving import ServingSettings

    return ServingSettings(
        threshold=threshold, image_size=size, max_pixels=10_000_000, batch_size=2, variant="tiny"
    )


def bomb_png() -> bytes:
    from fakeface.synth import decompression_bomb_png

    return decompression_bomb_png(20_000, 20_000)


def test_score_contents_keeps_every_row_in_order_with_a_status() -> None:
    from fakeface.serving import score_contents
    from tests.test_score import tiny_model

    bright = encode(np.full((40, 50, 3), 230, np.uint8))
    dark = encode(np.full((40, 50, 3), 20, np.uint8), "PNG")
    contents = pd.Series(
        [
            bright,
            b"",
            b"random bytes",
            bright[: len(bright) // 3],
            bomb_png(),
            None,
            dark,
            12345678901234,
            pd.NA,
            ["a", "list"],
        ],
        dtype=object,
    )
    out = score_contents(tiny_model(), contents, tiny_settings())
    assert list(out.columns) == ["image_id", "p_fake", "is_fake", "status", "error", *PART_ROW]
    assert out[PART_ROW].isna().all().all()  # a one-output model judges no part
    assert len(out) == len(contents)
    assert list(out.status) == ["ok"] + ["error"] * 5 + ["ok"] + ["error"] * 3
    kinds = [e.split(":")[0] if isinstance(e, str) else None for e in out.error]
    assert kinds[0] is None and kinds[6] is None
    assert kinds[1] == "empty" and kinds[2] == "not_an_image" and kinds[4] == "too_large"
    assert kinds[3] in ("truncated", "corrupt") and kinds[5] == "unreadable"
    assert kinds[7:] == ["unreadable"] * 3 and "got int" in out.error[7]
    assert out.is_fake[0] is True and out.is_fake[6] is False  # bright is "fake" for this model
    assert out.p_fake[0] > 0.5 > out.p_fake[6]
    assert out.p_fake[1:6].isna().all() and out.is_fake[1:6].isna().all()
    assert out.image_id[0] == hashlib.sha256(bright).hexdigest()
    assert out.image_id[5] is None and out.image_id[7] is None


def test_threshold_decides_is_fake_and_text_is_read_as_base64() -> None:
    from fakeface.serving import score_contents
    from tests.test_score import tiny_model

    image = encode(np.full((24, 24, 3), 200, np.uint8))
    as_text = base64.b64encode(image).decode("ascii")
    as_numpy = np.array([as_text.encode("ascii")])[0]  # what an `inputs` request arrives as
    as_bytes = as_text.encode("ascii")
    contents = pd.Series([image, as_text, as_numpy, as_bytes, "plain words"], dtype=object)
    low = score_contents(tiny_model(), contents, tiny_settings(threshold=0.01))
    high = score_contents(tiny_model(), contents, tiny_settings(threshold=0.99))
    assert low.p_fake[0] == low.p_fake[1] == low.p_fake[2] == low.p_fake[3] == high.p_fake[0]
    assert low.image_id[0] == low.image_id[1] == low.image_id[2] == low.image_id[3]
    assert low.is_fake[0] is True and high.is_fake[0] is False
    assert low.status[4] == "error" and low.error[4].startswith("not_an_image")


def test_a_part_model_answers_its_parts_at_the_folder_thresholds() -> None:
    from dataclasses import replace

    from fakeface.serving import pyfunc_signature, score_contents
    from tests.test_score import PART_THRESHOLDS, PARTS_FLAGGED, bright, no_face, tiny_part_model

    contents = pd.Series([encode(bright(1), "PNG"), encode(no_face(bright(2)), "PNG"), b"x"])
    settings = replace(tiny_settings(), part_thresholds=PART_THRESHOLDS)
    out = score_contents(tiny_part_model(), contents, settings)
    assert [c.name for c in pyfunc_signature().outputs.inputs] == list(out.columns)
    assert out.face_found.tolist() == [True, False, None]
    assert out.parts_flagged.tolist() == [PARTS_FLAGGED, None, None]
    assert out.p_nose[0] == pytest.approx(0.6, abs=1e-5) and out.p_nose[1:].isna().all()
    assert out.status.tolist() == ["ok", "ok", "error"] and out.is_fake[1] is True


def test_a_frame_without_content_is_refused_naming_the_column() -> None:
    from mlflow.exceptions import MlflowException

    from fakeface.serving import FakefaceModel
    from tests.test_score import tiny_model

    with pytest.raises(MlflowException, match="'content'"):
        FakefaceModel(tiny_model(), tiny_settings()).predict(pd.DataFrame({"bytes": [b"x"]}))


def test_requirements_name_the_mesh_package_only_for_a_mesh_model() -> None:
    from fakeface.serving import FACE_MESH_DISTRIBUTION, serving_requirements
    from tests.test_score import tiny_model

    class FacePartStatistics:  # the mesh layer's class name, nested one model down
        layers = ()

    class Inner:
        layers = (FacePartStatistics(),)

    class Outer:
        layers = (Inner(),)

    plain = serving_requirements(tiny_model())
    assert [r.split("==")[0] for r in plain] == [
        "tensorflow",
        "keras",
        "numpy",
        "pandas",
        "pillow",
        "mlflow",
    ]
    assert all(len(r.split("==")) == 2 and r.split("==")[1] for r in plain)
    assert serving_requirements(Outer())[-1].startswith(FACE_MESH_DISTRIBUTION + "==")


def test_the_part_recipe_requires_the_mesh_package_and_numba() -> None:
    from fakeface.models.factory import build_model
    from fakeface.serving import (
        COMPILED_PASS_DISTRIBUTION,
        FACE_MESH_DISTRIBUTION,
        output_width,
        serving_requirements,
    )

    model = build_model("part_heads")
    names = [r.split("==")[0] for r in serving_requirements(model)]
    assert names[-2:] == [FACE_MESH_DISTRIBUTION, COMPILED_PASS_DISTRIBUTION]
    assert output_width(model) == 6


# --------------------------------------------------------------------------- a real champion


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def champion(spark, ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    """The production recipe trained, registered and promoted; a night's drop; its scores."""
    from mlflow.tracking import MlflowClient

    from fakeface.score_run import run_score
    from fakeface.synth import write_corpus
    from fakeface.train import run_train

    root = tmp_path_factory.mktemp("serving")
    cfg = train_cfg(root, f"mlflow.registered_model={MODEL_NAME}", "score.inference_batch_size=4")
    (result,) = run_train(
        spark, cfg, str(ingested), [cfg.train.variant], folds=1, weights="none", epochs=1
    )
    client = MlflowClient()
    client.set_registered_model_alias(MODEL_NAME, "champion", result.version)

    corpus = root / "corpus"
    write_corpus(corpus, n_real=4, n_fake=4, size=64, seed=7, workers=1)
    drop = root / "drop"
    for i, src in enumerate(sorted(corpus.rglob("*.jpg"))):
        write(drop / f"upload_{i:02d}.jpg", src.read_bytes())
    good = (drop / "upload_00.jpg").read_bytes()
    write(drop / "random.jpg", np.random.default_rng(0).bytes(3000))
    write(drop / "truncated.jpg", good[: len(good) // 3])
    write(drop / "empty.jpg", b"")
    write(drop / "bomb.png", bomb_png())

    out = root / "scores"
    run_score(spark, cfg, str(drop), str(out), RUN_DATE, CHAMPION_URI)
    nightly = pd.read_parquet(out / f"run_date={RUN_DATE}")
    nightly["name"] = [Path(p).name for p in nightly.path]
    files = sorted(p.name for p in drop.iterdir())
    assert sorted(nightly.name) == files  # rows in == rows out
    return {
        "cfg": cfg,
        "root": root,
        "drop": drop,
        "files": files,
        "nightly": nightly.set_index("name").loc[files],
        "version": result.version,
        "threshold": result.threshold,
    }


def hidden_checkout_env(root: Path) -> dict[str, str]:
    """The environment of a Python that sees no checkout, pyspark or petastorm."""
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE % str(PROJECT_ROOT.resolve()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    env["PYTHONPATH"] = str(site)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _check_like_nightly(champion: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The rows answer exactly what the nightly job wrote for the same files, in order."""
    nightly = champion["nightly"]
    assert len(rows) == len(champion["files"])
    for name, row in zip(champion["files"], rows, strict=True):
        want = nightly.loc[name]
        assert row["status"] == want.status, (name, row, want.error)
        assert row["image_id"] == want.image_id, name
        # The production recipe is a part model: its part columns answer like the nightly's.
        for column in (*PART_COLUMNS, "face_found", "parts_flagged"):
            got, expected = row[column], want[column]
            if expected is None or (not isinstance(expected, str) and pd.isna(expected)):
                assert got is None, (name, column, got)
            elif column in PART_COLUMNS:
                assert abs(got - float(expected)) <= 1e-5, (name, column, got, expected)
            else:
                assert got == expected, (name, column, got, expected)
        if want.status == "ok":
            assert abs(row["p_fake"] - float(want.p_fake)) <= 1e-5, (name, row, want.p_fake)
            assert row["is_fake"] == bool(want.is_fake), name
            assert row["error"] is None
        else:
            assert row["p_fake"] is None and row["is_fake"] is None, name
            assert row["error"].split(":")[0] == want.error.split(":")[0], (name, row, want.error)
    assert (nightly.status == "ok").sum() == 8


PYFUNC_SCRIPT = """
import json, sys
from pathlib import Path
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
import fakeface
files = sorted(Path(sys.argv[2]).iterdir())
out = model.predict(pd.DataFrame({"content": [f.read_bytes() for f in files]}))
print(json.dumps({
    "fakeface": fakeface.__file__,
    "spark": "pyspark" in sys.modules,
    "rows": json.loads(out.to_json(orient="records")),
}))
"""


def test_pyfunc_loads_without_the_checkout_and_answers_like_the_nightly_job(
    champion: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(tmp_path / "m")))
    done = subprocess.run(
        [sys.executable, "-c", PYFUNC_SCRIPT, str(folder), str(champion["drop"])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=hidden_checkout_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(answer["fakeface"]).is_relative_to(folder / "code"), answer["fakeface"]
    assert answer["spark"] is False
    _check_like_nightly(champion, answer["rows"])


def test_the_folder_carries_its_threshold_requirements_and_a_real_example(
    champion: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

    from fakeface.outputs import PART_NAMES
    from fakeface.serving import (
        COMPILED_PASS_DISTRIBUTION,
        FACE_MESH_DISTRIBUTION,
        read_settings,
    )

    folder = Path(mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(tmp_path / "m")))
    version = MlflowClient().get_model_version(MODEL_NAME, champion["version"])
    settings = read_settings(folder / "data")
    assert settings.threshold == float(version.tags["threshold"]) == champion["threshold"]
    assert settings.image_size == int(version.tags["input_size"]) == 48
    requirements = (folder / "requirements.txt").read_text().split()
    names = {line.split("==")[0].lower() for line in requirements}
    plain = {"tensorflow", "keras", "numpy", "pandas", "pillow", "mlflow"}
    # the production recipe runs the face mesh and the compiled pixel pass in its graph:
    # their packages, and no other
    assert names == plain | {FACE_MESH_DISTRIBUTION, COMPILED_PASS_DISTRIBUTION}
    assert {f"threshold_{p}" for p in PART_NAMES} <= set(version.tags)
    assert set(settings.part_thresholds) == set(PART_NAMES)
    assert all("==" in r and "/" not in r and not r.startswith("-") for r in requirements)
    meta = Model.load(str(folder))
    assert meta.flavors["python_function"]["loader_module"] == "fakeface.serving"
    assert "keras" in meta.flavors  # the nightly job, promotion and Grad-CAM read the pixels
    assert [c.name for c in meta.get_input_schema().inputs] == ["content"]
    example = json.loads((folder / "serving_input_example.json").read_text())
    content = base64.b64decode(example["dataframe_split"]["data"][0][0])
    answer = mlflow.pyfunc.load_model(str(folder)).predict(pd.DataFrame({"content": [content]}))
    assert answer.status.tolist() == ["ok"]  # the input example is a real image


@pytest.fixture
def server(champion: dict[str, Any], tmp_path: Path):
    """`mlflow models serve` on the champion, in a Python that cannot see the checkout."""
    import requests

    port = free_port()
    log_path = tmp_path / "serve.log"
    env = hidden_checkout_env(tmp_path)
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                mlflow_cli,
                "models",
                "serve",
                "-m",
                CHAMPION_URI,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield url, proc, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _post(url: str, body: Any) -> Any:
    import requests

    return requests.post(f"{url}/invocations", json=body, timeout=120)


def test_served_model_answers_every_row_like_the_nightly_job(
    champion: dict[str, Any], server: tuple[str, Any, Path]
) -> None:
    url, proc, log_path = server
    contents = [(champion["drop"] / name).read_bytes() for name in champion["files"]]
    split = {
        "dataframe_split": {
            "columns": ["content"],
            "data": [[base64.b64encode(c).decode("ascii")] for c in contents],
        }
    }
    answer = _post(url, split)
    assert answer.status_code == 200, answer.text
    _check_like_nightly(champion, answer.json()["predictions"])

    # One upload at a time, as a moderator's tool sends it: the same score.
    one = champion["files"].index("upload_03.jpg")
    record = {"dataframe_records": [{"content": base64.b64encode(contents[one]).decode()}]}
    single = _post(url, record)
    assert single.status_code == 200, single.text
    assert single.json()["predictions"][0]["p_fake"] == pytest.approx(
        float(champion["nightly"].loc["upload_03.jpg"].p_fake), abs=1e-5
    )

    # MLflow's `inputs` format hands the base64 text over undecoded: read as the file too.
    inputs = _post(url, {"inputs": {"content": [base64.b64encode(contents[one]).decode()]}})
    assert inputs.status_code == 200, inputs.text
    assert inputs.json()["predictions"][0] == single.json()["predictions"][0]

    missing = _post(url, {"dataframe_records": [{"image": "aGk="}]})
    assert missing.status_code == 400, missing.text
    assert "content" in missing.json()["message"]
    assert proc.poll() is None, log_path.read_text()[-3000:]  # still serving


# --------------------------------------------------------------------------- driver-side checks


def _copy(champion: dict[str, Any], tmp_path: Path) -> Path:
    import mlflow

    folder = mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(tmp_path / "dl"))
    return Path(shutil.copytree(folder, tmp_path / "model"))


def test_driver_checks_hold_for_the_serving_layout(
    champion: dict[str, Any], tmp_path: Path
) -> None:
    from fakeface.model_bundle import check_model_files, check_signature

    folder = _copy(champion, tmp_path)
    check_signature(folder, [(48, 48)], "m")  # the pixel signature, not the bytes-in one
    check_model_files(folder, "m")
    with pytest.raises(ModelError, match=r"expects images of shape \(N, 48, 48, 3\).*32x32x3"):
        check_signature(folder, [(32, 32)], "m")

    (folder / "data" / "fakeface.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"no readable data/fakeface\.json"):
        check_model_files(folder, "m")

    folder = _copy(champion, tmp_path / "again")
    (folder / "code" / "fakeface" / "serving.py").unlink()
    with pytest.raises(ModelError, match="no code/fakeface/ package"):
        check_model_files(folder, "m")


def test_a_retagged_threshold_is_said_before_the_night_runs(caplog) -> None:
    from fakeface.model_bundle import warn_serving_drift
    from fakeface.registry import ResolvedModel

    resolved = ResolvedModel("m", "1", "models:/m/1", 0.42, 32, "tiny", {})
    with caplog.at_level("WARNING", logger="fakeface.model_bundle"):
        warn_serving_drift(tiny_settings(threshold=0.42), resolved, "m v1")
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="fakeface.model_bundle"):
        warn_serving_drift(tiny_settings(threshold=0.5, size=48), resolved, "m v1")
    assert "threshold tag 0.42 differs from the model folder's 0.5" in caplog.text
    assert "input_size tag 32 differs from the model folder's 48" in caplog.text
