"""Typed configuration: dataclasses filled from `conf/*.yaml` and `--set section.key=value`.

A YAML file may name a parent with `extends: base.yaml`; the child overrides key by key.
Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fakeface.errors import ConfigError


@dataclass
class SparkSettings:
    """How the SparkSession is built; `conf` is passed through as spark.* settings."""

    master: str = "local[*]"
    app_name: str = "fakeface"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    conf: dict[str, str] = field(default_factory=dict)
    submit_args: list[str] = field(default_factory=list)


@dataclass
class IngestSettings:
    """Decode and resize of raw images into Parquet."""

    image_size: int = 256
    max_pixels: int = 64_000_000
    arrow_batch_size: int = 64
    arrow_batch_mb: int = 16
    output_file_mb: int = 1024
    parquet_codec: str = "none"
    max_partition_bytes: str = "16m"
    extensions: list[str] = field(default_factory=lambda: [".jpg", ".jpeg", ".png"])


@dataclass
class MlflowSettings:
    """Tracking store and registry; MLFLOW_TRACKING_URI in the environment wins."""

    tracking_uri: str = "sqlite:///var/mlflow/mlflow.db"
    artifact_root: str = "var/mlflow/artifacts"
    experiment: str = "fakeface"
    nightly_experiment: str = "fakeface-nightly"
    registered_model: str = "fakeface"
    champion_alias: str = "champion"


@dataclass
class TrainSettings:
    """Training recipe; `variant` is the production recipe trained when --variant is absent."""

    variant: str = "custom"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    lr_schedule: str = "constant"
    label_smoothing: float = 0.0
    weights: str = "none"
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 20
    folds: int = 1
    seed: int = 0
    eval_fraction: float = 0.2
    val_fraction: float = 0.15
    patience: int = 6
    max_minutes: float = 0.0
    augmentations: dict[str, float] = field(default_factory=dict)
    feed_cache_dir: str = "var/petastorm"
    shuffle_buffer: int = 512
    gradcam_examples: int = 3
    register: bool = True
    # part recipe only: random platform re-encodes of each training image added to the
    # part heads' training rows (fakeface.reencode.random_reencode); 0: originals only
    part_reencodes: int = 0


@dataclass
class PromoteSettings:
    """Champion/challenger rule: the candidate must beat the champion by these margins."""

    min_auc_gain: float = 0.0
    min_accuracy_gain: float = 0.0


@dataclass
class ScoreSettings:
    """Nightly scoring."""

    model_uri: str = ""
    arrow_batch_size: int = 256
    inference_batch_size: int = 64
    images_per_task: int = 1000
    max_error_share: float = 0.25


@dataclass
class Config:
    """The whole configuration of a job; logged to MLflow with every run."""

    spark: SparkSettings = field(default_factory=SparkSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    promote: PromoteSettings = field(default_factory=PromoteSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    project_root: str = ""

    def to_flat_dict(self) -> dict[str, Any]:
        """`section.key -> value`, for logging as MLflow params."""
        flat: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if dataclasses.is_dataclass(value):
                for key, item in dataclasses.asdict(value).items():
                    flat[f"{section.name}.{key}"] = item
        return flat

    def resolve_path(self, path: str) -> Path:
        """A config path, made absolute against the project root when relative."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.project_root) / p

    @property
    def tracking_uri(self) -> str:
        """The tracking URI in force: the environment wins, relative SQLite paths are rooted."""
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow.tracking_uri
        return self._root_uri(uri)

    @property
    def registry_uri(self) -> str:
        """The registry URI: MLFLOW_REGISTRY_URI, else the tracking URI."""
        return self._root_uri(os.environ.get("MLFLOW_REGISTRY_URI") or self.tracking_uri)

    def _root_uri(self, uri: str) -> str:
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + str(self.resolve_path(uri[len(prefix) :]))
        if "://" not in uri and not uri.startswith("/") and uri:
            return str(self.resolve_path(uri))
        return uri

    @property
    def model_uri(self) -> str:
        """Model to score with: config, else the registered model's champion alias."""
        return self.score.model_uri or (
            f"models:/{self.mlflow.registered_model}@{self.mlflow.champion_alias}"
        )


def default_project_root() -> Path:
    """The folder holding `conf/`: the checkout this package lives in, else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "conf").is_dir() else Path.cwd()


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"config 'extends' loops back to {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    parent = data.pop("extends", None)
    if parent:
        base = _read_yaml((path.parent / parent).resolve(), (*seen, path))
        return _deep_merge(base, data)
    return data


def config_files(path: str | Path) -> list[Path]:
    """A config file and the files it `extends:`, child first (what a cluster driver needs)."""
    files: list[Path] = []
    current: Path | None = Path(path).resolve()
    while current is not None and current not in files:
        files.append(current)
        data = yaml.safe_load(current.read_text()) if current.is_file() else None
        parent = data.get("extends") if isinstance(data, dict) else None
        current = (current.parent / parent).resolve() if parent else None
    return files


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "conf":
            merged[key] = _deep_merge(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against a dataclass field's type hint; convert the safe cases."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_coerce(f"{key}[{i}]", v, item_hint) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        _, value_hint = typing.get_args(hint)
        return {str(k): _coerce(f"{key}.{k}", v, value_hint) for k, v in value.items()}
    return value


def _build_section(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {name!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"unknown config key '{name}.{key}'; known keys: {', '.join(sorted(known))}"
            )
    values = {key: _coerce(f"{name}.{key}", value, hints[key]) for key, value in data.items()}
    return cls(**values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (['section', 'key'], typed value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise ConfigError(f"--set key must look like section.key, got {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    project_root: str | Path | None = None,
) -> Config:
    """Load a config file (or the defaults), apply `--set` overrides, validate every key."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path).resolve())
    for text in overrides or []:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key {'.'.join(parts)!r} is not inside a section")
            node = child
        node[parts[-1]] = value
    sections = {f.name: f for f in dataclasses.fields(Config) if f.name != "project_root"}
    built: dict[str, Any] = {}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(
                f"unknown config section {name!r}; known sections: {', '.join(sorted(sections))}"
            )
        section_cls = typing.get_type_hints(Config)[name]
        built[name] = _build_section(name, section_cls, value)
    root = project_root or (
        Path(path).resolve().parent.parent if path is not None else default_project_root()
    )
    cfg = Config(**built, project_root=str(root))
    validate_config(cfg)
    return cfg


def validate_config(cfg: Config) -> None:
    """Range checks that types alone cannot express."""
    checks = [
        (cfg.ingest.image_size >= 16, "ingest.image_size must be at least 16"),
        (cfg.ingest.max_pixels > 0, "ingest.max_pixels must be positive"),
        (cfg.ingest.arrow_batch_size > 0, "ingest.arrow_batch_size must be positive"),
        (cfg.ingest.arrow_batch_mb > 0, "ingest.arrow_batch_mb must be positive"),
        (cfg.ingest.output_file_mb > 0, "ingest.output_file_mb must be positive"),
        (
            cfg.ingest.parquet_codec
            in ("none", "uncompressed", "snappy", "lz4", "lz4_raw", "zstd", "gzip"),
            "ingest.parquet_codec must be one of none, snappy, lz4, lz4_raw, zstd, gzip",
        ),
        (cfg.train.epochs >= 1, "train.epochs must be at least 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be at least 1"),
        (cfg.train.folds >= 1, "train.folds must be at least 1"),
        (cfg.train.max_minutes >= 0, "train.max_minutes must be 0 (no limit) or positive"),
        (cfg.train.part_reencodes >= 0, "train.part_reencodes must be 0 or positive"),
        (0 < cfg.train.eval_fraction < 1, "train.eval_fraction must be between 0 and 1"),
        (0 < cfg.train.val_fraction < 1, "train.val_fraction must be between 0 and 1"),
        (cfg.train.learning_rate > 0, "train.learning_rate must be positive"),
        (cfg.train.optimizer in ("adam", "adamw"), "train.optimizer must be adam or adamw"),
        (
            cfg.train.lr_schedule in ("constant", "cosine"),
            "train.lr_schedule must be constant or cosine",
        ),
        (0 <= cfg.train.label_smoothing < 0.5, "train.label_smoothing must be in [0, 0.5)"),
        (0 <= cfg.score.max_error_share <= 1, "score.max_error_share must be between 0 and 1"),
        (cfg.score.arrow_batch_size > 0, "score.arrow_batch_size must be positive"),
        (cfg.score.inference_batch_size > 0, "score.inference_batch_size must be positive"),
        (cfg.score.images_per_task > 0, "score.images_per_task must be positive"),
    ]
    for name, prob in cfg.train.augmentations.items():
        checks.append(
            (0 <= prob <= 1, f"train.augmentations.{name} must be a probability in [0, 1]")
        )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
