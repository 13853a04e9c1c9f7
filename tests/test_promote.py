"""Promotion: the alias moves only to a better model, every decision is recorded, exit codes.

The evaluation set is the candidate's `split/eval_image_ids.txt`: 5 dark "real" and 3 bright
"fake" images (majority baseline 0.625) out of an ingested, labelled set of 12.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from fakeface.errors import ModelError
from tests.conftest import PROJECT_ROOT, encode
from tests.test_score import (
    _load_job,
    _SharedSession,
    bright,
    dark,
    log_tiny_model,
    register_version,
    write,
)

_names = itertools.count()


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ingested labelled dataset (6 real, 6 fake) and the evaluation ids (5 real, 3 fake)."""
    from fakeface.config import load_config
    from fakeface.decode import image_id
    from fakeface.ingest import run_ingest

    root = tmp_path_factory.mktemp("promote")
    corpus = root / "corpus"
    real = [encode(dark(i)) for i in range(6)]
    fake = [encode(bright(i)) for i in range(6)]
    for i, data in enumerate(real):
        write(corpus / "training_real" / f"real_{i:05d}.jpg", data)
    for i, data in enumerate(fake):
        write(corpus / "training_fake" / f"easy_{i}_1000.jpg", data)
    cfg = load_config(
        PROJECT_ROOT / "conf" / "local.yaml",
        ["ingest.image_size=32", "ingest.arrow_batch_size=8"],
        project_root=root,
    )
    run_ingest(spark, cfg, str(corpus), str(root / "lake"), "2026-03-01")
    eval_ids = [image_id(d) for d in real[:5] + fake[:3]]
    return {"path": str(root / "lake"), "eval_ids": eval_ids}


@pytest.fixture(scope="module")
def models(lake: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Logged (not registered) models: (model URI, run id)."""
    ids = lake["eval_ids"]
    return {
        "good": log_tiny_model(sign=1.0, eval_ids=ids),
        "bad": log_tiny_model(sign=-1.0, eval_ids=ids),  # inverted: AUC 0
        "flat": log_tiny_model(gain=0.0, eval_ids=ids),  # p = 0.5 for every image
        "good_no_ids": log_tiny_model(sign=1.0),
    }


@pytest.fixture
def promo_cfg(cfg):
    """The test config with a registered model name of its own (aliases are per model)."""
    cfg.mlflow.registered_model = f"promote-tests-{next(_names)}"
    return cfg


def register(cfg, models, kind: str, threshold: float | None = 0.5, champion: bool = False) -> str:
    uri, run_id = models[kind]
    alias = cfg.mlflow.champion_alias if champion else None
    return register_version(uri, cfg.mlflow.registered_model, run_id, threshold, alias)


def client():
    from mlflow.tracking import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def alias_version(cfg) -> str | None:
    from fakeface.registry import champion_version

    return champion_version(client(), cfg.mlflow.registered_model, cfg.mlflow.champion_alias)


def version_tags(cfg, version: str) -> dict[str, str]:
    return dict(client().get_model_version(cfg.mlflow.registered_model, version).tags)


def promotion_notes(cfg, version: str) -> list[str]:
    return [v for k, v in version_tags(cfg, version).items() if k.startswith("promotion_")]


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("cand", "champ", "better", "why"),
    [
        ({"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.9}, True, "AUC +0.1000"),
        ({"auc": 0.8, "accuracy": 0.9}, {"auc": 0.9, "accuracy": 0.8}, False, "AUC -0.1000"),
        ({"auc": 0.9, "accuracy": 0.9}, {"auc": 0.9 + 1e-12, "accuracy": 0.8}, True, "equal"),
        ({"auc": 0.9, "accuracy": 0.8}, {"auc": 0.9, "accuracy": 0.8}, False, "equal"),
        ({"auc": 0.9, "accuracy": 0.7}, None, True, "beats the majority baseline"),
        ({"auc": 0.9, "accuracy": 0.6}, None, False, "does not beat"),
    ],
)
def test_decide(cand: dict, champ: dict | None, better: bool, why: str) -> None:
    from fakeface.promote import decide

    cand = {**cand, "majority_baseline": 0.6}
    verdict, reason = decide(cand, champ, min_auc_gain=0.0, min_accuracy_gain=0.0)
    assert verdict is better and why in reason


def test_decide_respects_margins() -> None:
    from fakeface.promote import decide

    cand, champ = (
        {"auc": 0.91, "accuracy": 0.9, "majority_baseline": 0.5},
        {
            "auc": 0.9,
            "accuracy": 0.8,
        },
    )
    assert decide(cand, champ, 0.02, 0.0)[0] is False
    assert decide(cand, champ, 0.005, 0.0)[0] is True


# --------------------------------------------------------------------------- run_promote


def test_first_model_must_beat_the_majority_baseline(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import run_promote

    register(promo_cfg, models, "bad")
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.decision == "keep" and decision.exit_code == 3 and not decision.promoted
    assert decision.champion_version is None and decision.n_eval == 8
    assert decision.candidate_metrics["majority_baseline"] == pytest.approx(0.625)
    assert "does not beat the majority baseline" in decision.reason
    assert alias_version(promo_cfg) is None

    # Everything called "real" (threshold above every score): exactly the baseline, not enough.
    register(promo_cfg, models, "flat", threshold=0.6)
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.candidate_metrics["accuracy"] == pytest.approx(0.625)
    assert decision.exit_code == 3 and alias_version(promo_cfg) is None

    good = register(promo_cfg, models, "good")
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.decision == "promote" and decision.promoted and decision.exit_code == 0
    assert decision.candidate_version == good and alias_version(promo_cfg) == good
    assert "beats the majority baseline" in decision.reason
    assert "promoted_at" in version_tags(promo_cfg, good)


def test_better_candidate_is_promoted_and_recorded(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import format_decision, run_promote

    old = register(promo_cfg, models, "bad", champion=True)
    new = register(promo_cfg, models, "good")
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.exit_code == 0 and decision.promoted and alias_version(promo_cfg) == new
    assert decision.candidate_metrics["auc"] == 1.0 and decision.champion_metrics["auc"] == 0.0
    assert "AUC +1.0000 > min_auc_gain 0" in decision.reason
    for version in (old, new):
        (note,) = promotion_notes(promo_cfg, version)
        assert note.startswith("promote: AUC +1.0000") and decision.mlflow_run_id in note
    assert "promoted_at" in version_tags(promo_cfg, new)
    assert "demoted_at" in version_tags(promo_cfg, old)

    run = client().get_run(decision.mlflow_run_id)
    assert run.info.run_name == "promotion" and run.info.status == "FINISHED"
    assert run.data.tags["decision"] == "promote" and run.data.tags["promoted"] == "true"
    assert run.data.tags["forced"] == "false" and "AUC +1.0000" in run.data.tags["reason"]
    assert run.data.params["candidate_version"] == new
    assert run.data.params["champion_version"] == old
    assert run.data.params["eval_source"] == "artifact" and run.data.params["n_eval"] == "8"
    assert run.data.metrics["candidate_auc"] == 1.0 and run.data.metrics["champion_auc"] == 0.0
    assert run.data.metrics["auc_gain"] == 1.0
    experiment = client().get_experiment(run.info.experiment_id)
    assert experiment.name == promo_cfg.mlflow.experiment

    lines = format_decision(decision)
    assert lines[0].startswith(f"promotion {promo_cfg.mlflow.registered_model}: candidate v{new}")
    assert lines[-1].startswith(f"decision: promoted v{new} to @champion: AUC +1.0000")


def test_worse_candidate_is_kept(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import run_promote

    good = register(promo_cfg, models, "good", champion=True)
    bad = register(promo_cfg, models, "bad")
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.decision == "keep" and decision.exit_code == 3 and not decision.promoted
    assert alias_version(promo_cfg) == good
    assert "AUC -1.0000 is not > min_auc_gain" in decision.reason
    assert promotion_notes(promo_cfg, bad)[0].startswith("keep: AUC -1.0000")
    assert "promoted_at" not in version_tags(promo_cfg, bad)


def test_equal_auc_is_decided_by_accuracy(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import run_promote

    # The same weights; the champion's threshold is above every score (accuracy 0.625).
    register(promo_cfg, models, "good", threshold=0.999, champion=True)
    new = register(promo_cfg, models, "good", threshold=0.5)
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.candidate_metrics["auc"] == decision.champion_metrics["auc"]
    assert "AUC equal" in decision.reason and "accuracy +0.3750" in decision.reason
    assert decision.promoted and alias_version(promo_cfg) == new


def test_dry_run_decides_without_moving(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import format_decision, run_promote

    old = register(promo_cfg, models, "bad", champion=True)
    new = register(promo_cfg, models, "good")
    decision = run_promote(spark, promo_cfg, lake["path"], dry_run=True)
    assert decision.decision == "promote" and decision.exit_code == 0
    assert not decision.promoted and alias_version(promo_cfg) == old
    assert promotion_notes(promo_cfg, new) == [] and promotion_notes(promo_cfg, old) == []
    run = client().get_run(decision.mlflow_run_id)
    assert run.data.tags["dry_run"] == "true" and run.data.tags["promoted"] == "false"
    assert format_decision(decision)[-1].startswith(f"decision: dry run: would promote v{new}")


def test_force_moves_the_alias_and_is_logged(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import run_promote

    register(promo_cfg, models, "good", champion=True)
    bad = register(promo_cfg, models, "bad")
    decision = run_promote(spark, promo_cfg, lake["path"], candidate=bad, force=True)
    assert not decision.better and decision.forced and decision.promoted
    assert decision.exit_code == 0 and alias_version(promo_cfg) == bad
    assert decision.reason.startswith("forced: AUC -1.0000")
    run = client().get_run(decision.mlflow_run_id)
    assert run.data.tags["forced"] == "true" and run.data.params["forced"] == "True"
    assert promotion_notes(promo_cfg, bad)[0].startswith("promote (forced): forced: AUC")


def test_missing_eval_ids_fall_back_to_all_labelled_rows(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import run_promote

    register(promo_cfg, models, "good_no_ids")
    decision = run_promote(spark, promo_cfg, lake["path"])
    assert decision.eval_source == "all_labelled" and decision.n_eval == 12
    assert "no split/eval_image_ids.txt: evaluated on all labelled rows" in decision.reason
    assert decision.promoted


def test_candidate_without_threshold_is_an_error(spark, promo_cfg, lake, models) -> None:
    from fakeface.promote import run_promote

    register(promo_cfg, models, "good", threshold=None)
    with pytest.raises(ModelError, match="no 'threshold' tag"):
        run_promote(spark, promo_cfg, lake["path"])


# --------------------------------------------------------------------------- the job script


def test_job_exit_codes(spark, promo_cfg, lake, models, tmp_path: Path, monkeypatch, capsys):
    from fakeface import spark as spark_module
    from fakeface.cli import run_job

    monkeypatch.setattr(
        spark_module, "build_spark_session", lambda cfg, suffix="": _SharedSession(spark)
    )
    job = _load_job("promote")
    name = promo_cfg.mlflow.registered_model
    base = [
        "--data", lake["path"],
        "--set", f"mlflow.registered_model={name}",
        "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}",
    ]  # fmt: skip
    register(promo_cfg, models, "bad", champion=True)
    good = register(promo_cfg, models, "good")
    assert run_job(job.main, [*base, "--dry-run"]) == 0
    assert alias_version(promo_cfg) != good
    assert run_job(job.main, base) == 0
    out = capsys.readouterr().out
    assert f"decision: promoted v{good} to @champion" in out and "candidate v" in out
    assert alias_version(promo_cfg) == good

    worse = register(promo_cfg, models, "bad")
    assert run_job(job.main, base) == 3
    assert f"decision: kept @champion on v{good}" in capsys.readouterr().out
    assert run_job(job.main, [*base, "--candidate", worse, "--force"]) == 0
    assert alias_version(promo_cfg) == worse

    register(promo_cfg, models, "good", threshold=None)
    assert run_job(job.main, base) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "no 'threshold' tag" in err[0]
