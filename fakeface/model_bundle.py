"""A registered model version on its way to the workers: download, check, pack into bytes.

The driver downloads the version's MLflow folder once, refuses it in one line when its
signature does not fit the data or its Keras archive is damaged (before any task runs), and
packs it into deterministic tar bytes to broadcast; workers unpack them (`unpack_model`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakeface.errors import ModelError

if TYPE_CHECKING:
    from fakeface.registry import ResolvedModel
    from fakeface.serving import ServingSettings

log = logging.getLogger(__name__)


def pack_model_dir(model_dir: str | Path) -> bytes:
    """An MLflow model folder as uncompressed tar bytes (the .keras file is a zip already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # Same files -> same bytes (no mtimes/owners), so the digest in the cache key is
        # stable across downloads and reused Python workers keep their loaded model.
        tar.add(str(model_dir), arcname="model", filter=_normalized)
    return buffer.getvalue()


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def unpack_model(data: bytes, dest: str | Path) -> Path:
    """Unpack `pack_model_dir` bytes under `dest`; return the model folder."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        if hasattr(tarfile, "data_filter"):  # refuses links and paths outside dest
            tar.extractall(str(dest), filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(str(dest))
    return Path(dest) / "model"


@dataclass(frozen=True)
class PackedModel:
    """A resolved model version and its MLflow folder as bytes, ready to broadcast."""

    resolved: ResolvedModel
    data: bytes
    digest: str

    @property
    def key(self) -> str:
        """Cache key: the version plus a content digest (two stores may reuse numbers)."""
        return f"{self.resolved.name}/{self.resolved.version}/{self.digest[:16]}"


def download_model(resolved: ResolvedModel, dest: str | Path) -> Path:
    """Download a registered version's MLflow folder to `dest`."""
    import mlflow

    from fakeface.registry import with_retry

    try:
        path = with_retry(
            lambda: mlflow.artifacts.download_artifacts(
                artifact_uri=resolved.uri, dst_path=str(dest)
            )
        )
    except Exception as exc:
        raise ModelError(f"cannot download {resolved.uri}: {str(exc).splitlines()[0]}") from None
    if not (Path(path) / "MLmodel").is_file():
        # MLflow "downloads" an emptied or deleted artifact folder without complaint.
        raise ModelError(
            f"{resolved.uri} has no files at its artifact location (deleted or never"
            " uploaded); re-register the model from its training run"
        )
    return Path(path)


def package_model(resolved: ResolvedModel, image_shapes: Iterable[tuple[int, int]]) -> PackedModel:
    """Download, check the signature against the data's image shapes, and pack into bytes."""
    with tempfile.TemporaryDirectory(prefix="fakeface-dl-") as tmp:
        model_dir = download_model(resolved, tmp)
        label = f"model {resolved.name} v{resolved.version}"
        check_signature(model_dir, image_shapes, label)
        settings = check_model_files(model_dir, label)
        if settings is not None:
            warn_serving_drift(settings, resolved, label)
        data = pack_model_dir(model_dir)
    return PackedModel(resolved, data, hashlib.sha256(data).hexdigest())


def check_signature(
    model_dir: str | Path, image_shapes: Iterable[tuple[int, int]], label: str
) -> None:
    """Refuse a model whose MLflow signature does not take (N, H, W, 3) uint8 of our sizes."""
    from mlflow.models import Model
    from mlflow.types.schema import TensorSpec

    try:
        meta = Model.load(str(model_dir))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{label} has no readable MLmodel file: {first}") from None
    if "keras" not in meta.flavors:
        raise ModelError(
            f"{label} is not a Keras model (flavors: {', '.join(sorted(meta.flavors))})"
        )
    signature = stored_pixel_signature(meta)
    if signature is None or signature.inputs is None:
        raise ModelError(
            f"{label} has no input signature, so its input cannot be checked against the"
            " images; log it with signature=(-1, -1, -1, 3) uint8"
        )
    specs = signature.inputs.inputs
    if len(specs) != 1 or not isinstance(specs[0], TensorSpec):
        raise ModelError(
            f"{label} expects {signature.inputs.to_json()}; scoring feeds one uint8"
            " tensor (N, H, W, 3)"
        )
    spec = specs[0]
    shape, dtype = tuple(spec.shape), np.dtype(spec.type)
    wanted = "(N, H, W, 3) uint8"
    if dtype != np.uint8 or len(shape) != 4 or shape[3] not in (-1, 3):
        raise ModelError(
            f"{label} expects {dtype} tensors of shape {_shape_text(shape)}, but the data are"
            f" {wanted} images"
        )
    for h, w in sorted(set(image_shapes)):
        if shape[1] not in (-1, h) or shape[2] not in (-1, w):
            raise ModelError(
                f"{label} expects images of shape {_shape_text(shape)}, but the data are"
                f" {h}x{w}x3 uint8; ingest at its size or log it with a (-1, -1, -1, 3) signature"
            )
    outputs = signature.outputs.inputs if signature.outputs is not None else []
    if len(outputs) == 1 and isinstance(outputs[0], TensorSpec):
        check_output_shape(tuple(outputs[0].shape), label)


def check_output_shape(shape: tuple[int, ...], label: str) -> None:
    """Refuse an output other than (N,) / (N, 1) P(fake) or the part model's (N, 6)."""
    from fakeface.outputs import MODEL_OUTPUTS

    if shape[1:] not in ((), (1,), (len(MODEL_OUTPUTS),)):
        raise ModelError(
            f"{label} outputs {_shape_text(shape)}; scoring needs one probability per image"
            f" (N, 1) or the part model's (N, {len(MODEL_OUTPUTS)}) {', '.join(MODEL_OUTPUTS)}"
        )


def stored_pixel_signature(meta: Any) -> Any:
    """The pixel model's signature: in the metadata of a `fakeface.serving` folder (whose
    own signature is the pyfunc's bytes-in one), else the MLmodel's signature."""
    from mlflow.models import ModelSignature

    from fakeface.serving import METADATA_KEY, PIXEL_SIGNATURE_KEY

    stored = ((meta.metadata or {}).get(METADATA_KEY) or {}).get(PIXEL_SIGNATURE_KEY)
    if stored:
        return ModelSignature.from_dict(stored)
    return meta.signature


def is_serving_model(meta: Any) -> bool:
    """True for a folder logged by `fakeface.serving` (bytes-in pyfunc + pixel model)."""
    from fakeface.serving import LOADER_MODULE

    return meta.flavors.get("python_function", {}).get("loader_module") == LOADER_MODULE


def check_model_files(model_dir: str | Path, label: str) -> ServingSettings | None:
    """Refuse a model folder whose Keras archive is missing, truncated or altered.

    Returns the settings of a `fakeface.serving` folder (checked too), else None.

    Checked on the driver, before anything is broadcast: a bad archive found by the
    executors instead fails every task four times and buries the cause in a stack trace.
    The zip CRCs cover every byte of the weights, so no TensorFlow import is needed here.
    """
    from mlflow.models import Model

    meta = Model.load(str(model_dir))
    data_dir = Path(model_dir) / str(meta.flavors["keras"].get("data", "data"))
    archives = sorted(data_dir.glob("*.keras"))
    if not archives:
        exported = data_dir / "model"
        if exported.is_dir() and any(exported.iterdir()):
            return None  # a TF SavedModel export (save_exported_model=True): no archive
        raise ModelError(
            f"{label} has no Keras archive under {data_dir.name}/: the artifact is incomplete;"
            " re-register the model from its training run"
        )
    for archive in archives:
        try:
            with zipfile.ZipFile(archive) as bundle:
                names = set(bundle.namelist())
                if "config.json" not in names:
                    raise zipfile.BadZipFile("no config.json inside")
                if not names & {"model.weights.h5", "model.weights.npz"}:
                    raise zipfile.BadZipFile("no model.weights.h5 inside")
                damaged = bundle.testzip()
                if damaged is not None:
                    raise zipfile.BadZipFile(f"checksum mismatch in {damaged}")
                json.loads(bundle.read("config.json"))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelError(
                f"{label} has a corrupt Keras archive {archive.name} ({exc}); re-register the"
                " model from its training run"
            ) from None
    if is_serving_model(meta):
        return check_serving_files(Path(model_dir), meta, label)
    return None


def check_serving_files(model_dir: Path, meta: Any, label: str) -> ServingSettings:
    """Refuse a `fakeface.serving` folder without its settings or its code; its settings."""
    from fakeface.serving import CODE_DIR, DATA_DIR, SETTINGS_FILE, read_settings

    conf = meta.flavors["python_function"]
    data_dir = str(conf.get("data") or DATA_DIR)
    try:
        settings = read_settings(model_dir / data_dir)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{label} has no readable {data_dir}/{SETTINGS_FILE} ({type(exc).__name__}:"
            f" {exc}); re-register the model from its training run"
        ) from None
    code_dir = str(conf.get("code") or CODE_DIR)
    if not (model_dir / code_dir / "fakeface" / "serving.py").is_file():
        raise ModelError(
            f"{label} has no {code_dir}/fakeface/ package: its pyfunc cannot load; re-register"
            " the model from its training run"
        )
    return settings


def warn_serving_drift(settings: ServingSettings, resolved: ResolvedModel, label: str) -> None:
    """Say when the folder's thresholds or size differ from the registry's tags.

    The nightly job follows the tags; `mlflow models serve` and `pyfunc.load_model` follow
    the folder. Training writes both alike, so a difference means someone retagged.
    """
    if settings.threshold != resolved.threshold:
        log.warning(
            "%s: threshold tag %r differs from the model folder's %r: the nightly job flags at"
            " the tag, the served model at the folder's value; re-register to align them",
            label,
            resolved.threshold,
            settings.threshold,
        )
    if settings.part_thresholds != resolved.part_thresholds:
        log.warning(
            "%s: part threshold tags %r differ from the model folder's %r: the nightly job"
            " flags parts at the tags, the served model at the folder's values",
            label,
            resolved.part_thresholds,
            settings.part_thresholds,
        )
    if resolved.input_size and settings.image_size != resolved.input_size:
        log.warning(
            "%s: input_size tag %d differs from the model folder's %d (the served model's"
            " decode size)",
            label,
            resolved.input_size,
            settings.image_size,
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    """(-1, -1, 64, 3) -> '(N, ?, 64, 3)'."""
    names = ["N" if i == 0 and d == -1 else "?" if d == -1 else str(d) for i, d in enumerate(shape)]
    return "(" + ", ".join(names) + ")"
