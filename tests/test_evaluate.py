"""Evaluation pictures, Grad-CAM on every variant, region attention, the artifact bundle."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fakeface import evaluate
from fakeface.evaluate import (
    DEFAULT_REGION_BOXES,
    REGION_ATTENTION_COLUMNS,
    gradcam,
    plot_confident_grid,
    plot_confusion,
    plot_gradcam_overlays,
    plot_learning_curves,
    plot_roc,
    plot_score_histogram,
    region_attention,
    roc_curve,
    write_evaluation_artifacts,
)
from fakeface.metrics import roc_auc

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def custom_model():
    from fakeface.models.factory import build_model

    return build_model("custom", seed=0)


def test_plots_write_png_without_leaving_pyplot_figures(tmp_path: Path):
    rng = np.random.default_rng(1)
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    s = np.clip(y * 0.5 + rng.uniform(0, 0.5, len(y)), 0, 1)
    history = {"loss": [0.7, 0.5, 0.4], "val_loss": [0.72, 0.6, 0.55], "accuracy": [0.5, 0.7, 0.8]}
    history |= {"val_accuracy": [0.5, 0.6, 0.7], "auc": [0.5, 0.8, 0.9], "val_auc": [0.5, 0.7, 0.8]}
    paths = [
        plot_learning_curves(history, tmp_path / "curves.png"),
        plot_learning_curves({}, tmp_path / "no_curves.png"),
        plot_roc({"all": (y, s), "one class": (y[y == 1], s[y == 1])}, tmp_path / "roc.png"),
        plot_confusion(y, (s >= 0.5).astype(int), tmp_path / "confusion.png"),
        plot_score_histogram(y, s, 0.5, tmp_path / "hist.png"),
        plot_confident_grid(_images(len(y)), y, s, 0.5, tmp_path / "sub" / "grid.png", k=3),
    ]
    assert all(_is_png(p) for p in paths), paths
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # nothing registered with pyplot's global state


def test_roc_curve_matches_rank_auc():
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    s = np.array([0.1, 0.9, 0.4, 0.4, 0.8, 0.2, 0.3, 0.6])  # one tie across classes
    fpr, tpr = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(y, s))


def test_gradcam_custom_shape_range_and_textbook_equivalence(custom_model):
    import keras
    import tensorflow as tf

    x = _images(2, 40)
    heat = gradcam(custom_model, x)
    assert heat.shape == (2, 40, 40) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    # Textbook Grad-CAM through a functional sub-model on p(fake) gives the same normalised
    # maps: d p / d logit is a positive factor per image, which the normalisation removes.
    sub = keras.Model(
        custom_model.inputs, [custom_model.get_layer("bn4").output, custom_model.output]
    )
    with tf.GradientTape() as tape:
        fmap, p = sub([x], training=False)
        target = tf.reduce_sum(p)
    grads = tape.gradient(target, fmap)
    cam = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(grads, (1, 2), keepdims=True) * fmap, -1))
    cam = tf.image.resize(cam[..., None], (40, 40))[..., 0].numpy()
    cam /= np.maximum(cam.reshape(2, -1).max(1), 1e-12)[:, None, None]
    np.testing.assert_allclose(heat, cam, atol=1e-4)
    # an explicit layer works too; an unknown one is a clear error
    assert gradcam(custom_model, x, layer_name="conv2").shape == (2, 40, 40)
    with pytest.raises(ValueError, match="no 4-D"):
        gradcam(custom_model, x, layer_name="dense")
    with pytest.raises(ValueError, match="no layer 'nope'"):
        gradcam(custom_model, x, layer_name="nope")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        gradcam(custom_model, x[0])


def test_gradcam_simple_non_square_input():
    from fakeface.models.factory import build_model

    heat = gradcam(build_model("simple"), _images(2, 32)[:, :, :24])
    assert heat.shape == (2, 32, 24) and heat.min() >= 0.0 and heat.max() <= 1.0


def test_gradcam_residual_model_with_auxiliary_head():
    import keras
    from keras import layers

    inp = keras.Input((None, None, 3), dtype="uint8")
    x = layers.Rescaling(1 / 255)(layers.Resizing(24, 24)(keras.ops.cast(inp, "float32")))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="branch")(x)
    x = layers.Add(name="skip")([x, y])  # not a chain: Grad-CAM must use the functional graph
    pooled = layers.GlobalAveragePooling2D()(x)
    score = layers.Dense(1, activation="sigmoid", name="score")(pooled)
    aux = layers.Dense(3, activation="sigmoid", name="aux")(pooled)
    heat = gradcam(keras.Model(inp, [score, aux]), _images(2, 32))
    assert heat.shape == (2, 32, 32) and heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["vgg16", "efficientnetb4"])
def test_gradcam_nested_base(variant: str):
    import keras

    from fakeface.models.factory import build_model, set_base_trainable

    # Random weights: seeded, so the maps are not all dead ReLUs in an unlucky draw (that
    # failed once in a full run: heat.max() == 0 for vgg16).
    keras.utils.set_random_seed(0)
    model = build_model(variant)
    set_base_trainable(model, False)  # a frozen base must still pass gradients to its maps
    heat = gradcam(model, _images(1, 32))
    assert heat.shape == (1, 32, 32) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() > 0.0
    named = {"vgg16": "base/block5_conv2", "efficientnetb4": "base/top_conv"}[variant]
    assert gradcam(model, _images(1, 32), layer_name=named).shape == (1, 32, 32)


def test_plot_gradcam_overlays(tmp_path: Path, custom_model):
    out = plot_gradcam_overlays(custom_model, _images(2), ["a", "b"], tmp_path / "g.png")
    assert _is_png(out)


def test_region_attention_picks_the_hot_region():
    size = 64
    heat = np.zeros((3, size, size), dtype=np.float32)
    x0, y0, x1, y1 = DEFAULT_REGION_BOXES["nose"]
    heat[0, int(y0 * size) + 1 : int(y1 * size) - 1, int(x0 * size) + 1 : int(x1 * size) - 1] = 1.0
    heat[0, 0:3, 0:3] = 0.5  # some mass outside every region
    heat[1] = np.random.default_rng(0).uniform(0, 1, (size, size))
    out = region_attention(heat, ["0010", "1111", None])
    assert out.shape == (3, len(REGION_ATTENTION_COLUMNS)) and out.dtype == np.float32
    shares = out[:, :4]
    assert np.all(shares.sum(axis=1) <= 1.0 + 1e-6) and np.all(shares >= 0)
    assert int(np.argmax(shares[0])) == 2 and 0.9 < shares[0, 2] < 1.0
    assert out[0, -1] == 1.0  # nose attended, nose replaced
    assert region_attention(heat[:1], ["1100"])[0, -1] == 0.0  # nose attended, eyes replaced
    assert out[1, -1] == 1.0  # every region replaced
    assert np.isnan(out[2, -1]) and np.all(shares[2] == 0)  # no flags, no mass
    with pytest.raises(ValueError, match="region flag strings"):
        region_attention(heat, ["0010"])


def _bundle(tmp_path: Path, model, y: np.ndarray, levels: list[str | None], history=None):
    n = len(y)
    scores = np.linspace(0.05, 0.95, n)
    ids = [f"img{i}" for i in range(n)]
    paths = [
        f"/data/training_fake/{lv}_{i}_1010.jpg" if yi else f"/data/training_real/real_{i}.jpg"
        for i, (yi, lv) in enumerate(zip(y, levels, strict=True))
    ]
    return write_evaluation_artifacts(
        tmp_path,
        model=model,
        images=_images(n),
        y_true=y,
        scores=scores,
        threshold=0.5,
        levels=levels,
        history=history,
        image_ids=ids,
        paths=paths,
        gradcam_examples=2,
    )


def test_write_evaluation_artifacts(tmp_path: Path, custom_model):
    y = np.array([0, 0, 1, 1, 1, 0])
    levels = [None, None, "easy", "hard", "hard", None]
    written = _bundle(tmp_path, custom_model, y, levels, {"loss": [1.0, 0.5], "val_loss": [1, 0.7]})
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "learning_curves.png",
            "roc.png",
            "confusion.png",
            "score_histogram.png",
            "confident_grid.png",
            "gradcam_easy.png",
            "gradcam_hard.png",
            "predictions.csv",
        ]
    )
    assert all(_is_png(p) for p in written if p.suffix == ".png")
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert list(rows[0]) == list(evaluate.PREDICTION_COLUMNS)
    assert [r["level"] for r in rows] == ["real", "real", "easy", "hard", "hard", "real"]
    assert [r["is_fake"] for r in rows] == ["0", "0", "0", "1", "1", "1"]


def test_write_evaluation_artifacts_with_one_class_and_no_model(tmp_path: Path):
    reals = _bundle(tmp_path / "reals", None, np.zeros(3, int), [None] * 3)
    assert "gradcam" not in " ".join(p.name for p in reals) and len(reals) == 6
    fakes = _bundle(tmp_path / "fakes", None, np.ones(2, int), [float("nan"), "mid"])
    assert all(p.is_file() for p in fakes)
    rows = list(csv.DictReader((tmp_path / "fakes" / "predictions.csv").open()))
    assert [r["level"] for r in rows] == ["unknown", "mid"]  # NaN (pandas) means unknown


def test_gradcam_title_names_the_file_and_the_pasted_regions() -> None:
    from fakeface.evaluate import gradcam_title

    title = gradcam_title("file:/x/training_fake/mid_37_1010.jpg", "ab" * 32, 0.812, "mid", "1010")
    assert title == "mid_37_1010.jpg  p=0.81  mid: left eye, nose"
    assert "ab" * 8 not in title
    assert gradcam_title(None, "cd" * 32, 0.5, "unknown", "") == "cdcdcdcdcdcd  p=0.50  unknown"


def test_a_model_without_a_spatial_map_gets_no_gradcam_pictures(tmp_path: Path) -> None:
    import keras

    from fakeface.evaluate import has_spatial_map, write_evaluation_artifacts

    inputs = keras.Input((None, None, 3), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    flat = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    assert not has_spatial_map(flat)
    images = _images(4)
    written = write_evaluation_artifacts(
        tmp_path,
        images=images,
        y_true=np.array([0, 1, 0, 1]),
        scores=np.array([0.2, 0.7, 0.4, 0.9]),
        threshold=0.5,
        levels=[None, "easy", None, "hard"],
        history=None,
        image_ids=[f"id{i}" for i in range(4)],
        paths=["real_1.jpg", "easy_1_1000.jpg", "real_2.jpg", "hard_1_0001.jpg"],
        model=flat,
        gradcam_examples=2,
    )
    assert written and not list(tmp_path.glob("gradcam_*.png"))
