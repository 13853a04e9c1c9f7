"""MLflow tracking store and model registry: connect, log, register, resolve, promote.

Registered versions carry the tags scoring relies on: `variant`, `threshold`,
`input_size`, a part model's `threshold_<part>` (one per face part), and the evaluation
metrics (`eval_accuracy`, `eval_auc`, ...).
Promotion moves the `champion` alias; stages are deprecated and never used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fakeface.errors import FakefaceError, ModelError, TrackingError
from fakeface.outputs import part_thresholds_from_tags

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from fakeface.config import Config

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG_VARIANT = "variant"
TAG_THRESHOLD = "threshold"
TAG_INPUT_SIZE = "input_size"
TAG_EVAL_IDS_HASH = "eval_image_ids_sha256"


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when the tracking store cannot be reached."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(str(path), timeout=timeout_s).close()
        except (OSError, sqlite3.Error) as exc:
            raise TrackingError(f"MLflow store {uri} is not usable: {exc}") from None
        return
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
                return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it or set"
                " MLFLOW_TRACKING_URI"
            ) from None
    if uri.startswith("file:") or "://" not in uri:
        path = Path(uri[len("file:") :] if uri.startswith("file:") else uri)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"MLflow store {uri} is not usable: {exc}") from None


# MLflow error codes that mean "the store is not answering", not "your request is wrong"
# (INTERNAL_ERROR is also every MlflowException's default code, so it says nothing).
_OUTAGE_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def is_tracking_failure(exc: BaseException) -> bool:
    """True when `exc` says the tracking store or registry is down or unreachable.

    A rejected request (bad parameter, name taken) is not an outage and stays as it is:
    rerunning would not fix it.
    """
    import requests
    from mlflow.exceptions import MlflowException

    kinds: tuple[type[BaseException], ...] = (requests.RequestException, sqlite3.OperationalError)
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError

        kinds += (OperationalError, DBAPIError)
    except ImportError:  # pragma: no cover - mlflow depends on it
        pass
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the outage may be the cause of a wrapper
        seen.add(id(exc))
        if isinstance(exc, kinds):
            return True
        if isinstance(exc, MlflowException):
            text = str(exc)
            if exc.error_code in _OUTAGE_CODES or (
                text.startswith("API request to") and "failed with exception" in text
            ):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def tracking_failure_line(uri: str, exc: BaseException) -> str:
    """One line for a store that failed mid-run: what, where, and what to do."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"MLflow store {uri} failed mid-run ({first[:300]}); the run is incomplete: rerun"
        " when the store answers"
    )


@contextlib.contextmanager
def outage_as_tracking_error(uri: str) -> Iterator[None]:
    """Turn a store that stops answering mid-run into a one-line TrackingError.

    Anything else (a rejected request, a bug) propagates unchanged. A version is created
    with its tags in one call, so a cut never leaves a half-tagged version behind.
    """
    try:
        yield
    except FakefaceError:
        raise
    except Exception as exc:
        if is_tracking_failure(exc):
            raise TrackingError(tracking_failure_line(uri, exc)) from None
        raise


def configure_mlflow(cfg: Config) -> MlflowClient:
    """Point MLflow at the configured (or environment) store and registry; check it first."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = cfg.tracking_uri
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(cfg.registry_uri)
    # Local runs keep artifacts in the project, not in the current directory.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(tracking_uri=uri, registry_uri=cfg.registry_uri)


def ensure_experiment(cfg: Config, name: str) -> str:
    """The experiment's id, created with the configured artifact root if missing."""
    import mlflow

    existing = with_retry(lambda: mlflow.get_experiment_by_name(name))
    if existing is not None:
        experiment_id = existing.experiment_id
    else:
        location = experiment_artifact_location(cfg, name)
        try:
            experiment_id = mlflow.create_experiment(name, artifact_location=location)
        except Exception:  # created by a concurrent run in the meantime
            experiment_id = mlflow.get_experiment_by_name(name).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def experiment_artifact_location(cfg: Config, name: str) -> str | None:
    """Where a new experiment keeps its artifacts; None leaves it to the tracking server.

    A server (http/https) that serves artifacts hands out `mlflow-artifacts:` URIs that any
    driver can reach; a local `mlflow.artifact_root` folder would be written by the client
    and readable only on this machine, so it is ignored there. A URI root (s3://...) is kept.
    """
    root = cfg.mlflow.artifact_root
    if not root:
        return None
    if "://" not in root:
        if cfg.tracking_uri.startswith(("http://", "https://")):
            return None
        root = cfg.resolve_path(root).as_uri()
    return root.rstrip("/") + f"/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def with_retry(fn: Callable[[], T], attempts: int = 8, base_delay_s: float = 0.25) -> T:
    """Call `fn`, retrying SQLite's 'database is locked' when runs share one store."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(base_delay_s * 2**attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ResolvedModel:
    """A registered model version, resolved once on the driver."""

    name: str
    version: str
    source_uri: str
    threshold: float
    input_size: int | None
    variant: str | None
    tags: dict[str, str]
    # part -> threshold from the `threshold_<part>` tags; empty for a one-output model
    part_thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def resolve_model(client: MlflowClient, model_uri: str) -> ResolvedModel:
    """`models:/name@alias` or `models:/name/N` -> one version with its threshold tag."""
    from mlflow.exceptions import MlflowException

    alias = _ALIAS_URI.match(model_uri)
    number = _VERSION_URI.match(model_uri)
    if not alias and not number:
        raise ModelError(
            f"model URI {model_uri!r} must look like models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    try:
        if alias:
            mv = with_retry(
                lambda: client.get_model_version_by_alias(alias["name"], alias["alias"])
            )
        else:
            mv = with_retry(lambda: client.get_model_version(number["name"], number["version"]))
    except MlflowException as exc:
        if alias:
            raise ModelError(
                f"no version of model {alias['name']!r} has alias @{alias['alias']}: train one"
                " and promote it (jobs/promote.py, --force for a first deploy)"
            ) from None
        raise ModelError(f"model version {model_uri} not found: {exc.message}") from None
    tags = dict(mv.tags or {})
    if TAG_THRESHOLD not in tags:
        raise ModelError(
            f"model {mv.name} version {mv.version} has no '{TAG_THRESHOLD}' tag: refusing to"
            " score with an uncalibrated model"
        )
    try:
        threshold = float(tags[TAG_THRESHOLD])
    except ValueError:
        raise ModelError(
            f"model {mv.name} version {mv.version} has a non-numeric threshold tag"
        ) from None
    try:
        part_thresholds = part_thresholds_from_tags(tags)
    except ValueError as exc:
        raise ModelError(f"model {mv.name} version {mv.version} has a {exc}") from None
    size = tags.get(TAG_INPUT_SIZE)
    return ResolvedModel(
        name=mv.name,
        version=str(mv.version),
        source_uri=mv.source,
        threshold=threshold,
        input_size=int(size) if size and size.isdigit() else None,
        variant=tags.get(TAG_VARIANT),
        tags=tags,
        part_thresholds=part_thresholds,
    )


def register_model(
    client: MlflowClient,
    model_uri: str,
    name: str,
    tags: dict[str, Any],
    run_id: str | None = None,
) -> str:
    """Register a logged model under `name` with tags; return the new version number."""
    import mlflow

    mv = with_retry(lambda: mlflow.register_model(model_uri, name, tags=_stringify(tags)))
    if run_id:
        client.set_tag(run_id, "registered_version", str(mv.version))
    return str(mv.version)


def set_version_tags(client: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    """Tag one model version (values stringified)."""
    for key, value in _stringify(tags).items():
        with_retry(lambda k=key, v=value: client.set_model_version_tag(name, version, k, v))


def champion_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _stringify(tags: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        if isinstance(value, float):
            out[key] = repr(value)  # every digit: the threshold tag equals the model folder's
        else:
            out[key] = str(value)
    return out
