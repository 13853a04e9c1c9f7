"""Typed config: files, extends, overrides, errors that name the key."""

from pathlib import Path

import pytest

from fakeface.config import load_config
from fakeface.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["base.yaml", "local.yaml", "cluster.yaml", "demo.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "conf" / name)
    assert cfg.ingest.image_size > 0
    assert cfg.project_root == str(ROOT)


def test_extends_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.yaml").write_text("train:\n  epochs: 5\n  batch_size: 8\n")
    (tmp_path / "conf" / "b.yaml").write_text("extends: a.yaml\ntrain:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "conf" / "b.yaml", ["train.learning_rate=0.01", "spark.conf.x=1"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (7, 8, 0.01)
    assert cfg.spark.conf["x"] == "1"
    assert cfg.project_root == str(tmp_path)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.epoch=3", "train.epoch"),
        ("trian.epochs=3", "trian"),
        ("train.epochs=three", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("score.max_error_share=2", "score.max_error_share"),
        ("train.register=maybe", "train.register"),
        ("noequals", "section.key=value"),
    ],
)
def test_bad_keys_and_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(ROOT / "conf" / "local.yaml", [override])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_environment_tracking_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(ROOT / "conf" / "local.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert cfg.tracking_uri == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert cfg.tracking_uri == f"sqlite:///{ROOT}/var/mlflow/mlflow.db"


def test_flat_dict_for_mlflow_params() -> None:
    flat = load_config(ROOT / "conf" / "local.yaml").to_flat_dict()
    assert flat["train.variant"] and "ingest.image_size" in flat
