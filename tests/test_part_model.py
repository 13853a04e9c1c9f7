"""The part recipe as one Keras model: fitted by the training side, saved, (N, 6) out."""

from __future__ import annotations

import numpy as np
import pytest

from fakeface.outputs import MODEL_OUTPUTS, PART_NAMES


@pytest.fixture(scope="module")
def split() -> tuple[dict, dict]:
    """Drawn faces at 600 px; every other one a fake with one part pasted from another."""
    from fakeface.synth import make_fake, render_face

    rng = np.random.default_rng(0)
    faces = [render_face(np.random.default_rng(i), 600) for i in range(36)]
    images, labels, regions = [], [], []
    for i, (pixels, boxes) in enumerate(faces):
        if i % 2 == 0:
            images.append(pixels), labels.append(0), regions.append("0000")
        else:
            donor, donor_boxes = faces[(i + 3) % len(faces)]
            flags = ["1000", "0100", "0010", "0001"][(i // 2) % 4]
            images.append(make_fake(pixels, boxes, donor, donor_boxes, flags, "easy", rng))
            labels.append(1), regions.append(flags)
    images, labels, regions = np.stack(images), np.array(labels), np.array(regions)
    cut = 26
    return (
        {"image": images[:cut], "label": labels[:cut], "regions": regions[:cut]},
        {"image": images[cut:], "label": labels[cut:], "regions": regions[cut:]},
    )


@pytest.fixture(scope="module")
def fitted(split):
    from fakeface.models.factory import build_model
    from fakeface.part_training import fit_part_model

    train, val = split
    model = build_model("part_heads")
    heads, history = fit_part_model(model, train, val, reencodes=1, seed=0, size=600)
    return model, heads, history


def test_the_model_gives_p_fake_and_each_part(fitted, split) -> None:
    model, _, history = fitted
    _, val = split
    out = np.asarray(model.predict(val["image"], verbose=0))
    assert out.shape == (len(val["image"]), len(MODEL_OUTPUTS))
    assert (out[:, -1] == 1.0).all()  # the drawn faces are found
    np.testing.assert_allclose(out[:, 0], 1 - np.prod(1 - out[:, 1:5], axis=1), atol=1e-5)
    assert history["val_auc"][0] > 0.8  # pasted parts of another drawn face are easy
    assert set(history) >= {f"val_auc_{n}" for n in PART_NAMES}


def test_no_face_still_gets_p_fake(fitted) -> None:
    model, heads, _ = fitted
    blank = np.full((2, 600, 600, 3), 128, np.uint8)
    out = np.asarray(model.predict(blank, verbose=0))
    assert (out[:, -1] == 0.0).all()
    np.testing.assert_allclose(out[0, :5], heads.predict(heads.fill[None])[0], atol=1e-5)


def test_any_size_is_measured_at_600(fitted, split) -> None:
    from PIL import Image

    model, _, _ = fitted
    _, val = split
    small = np.stack([np.asarray(Image.fromarray(x).resize((300, 300))) for x in val["image"]])
    out = np.asarray(model.predict(small[:3], verbose=0))
    assert out.shape == (3, 6) and np.isfinite(out).all()


def test_saved_model_reloads_with_the_same_scores(fitted, split, tmp_path) -> None:
    import keras

    model, _, _ = fitted
    _, val = split
    path = tmp_path / "part.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(
        again.predict(val["image"][:4], verbose=0), model.predict(val["image"][:4], verbose=0)
    )


def test_part_thresholds_are_calibrated_per_part(fitted, split) -> None:
    from fakeface.part_training import part_thresholds

    model, _, _ = fitted
    _, val = split
    out = np.asarray(model.predict(val["image"], verbose=0))
    thresholds = part_thresholds(out, val["regions"], val["label"])
    assert list(thresholds) == list(PART_NAMES)
    assert all(0.0 < t < 1.0 for t in thresholds.values())


def test_reencoded_copies_are_seeded(split) -> None:
    from fakeface.part_training import measure_features

    train, _ = split
    a = measure_features(train["image"][:2], reencodes=2, seed=5, size=600, workers=1)
    b = measure_features(train["image"][:2], reencodes=2, seed=5, size=600, workers=1)
    assert a.shape[:2] == (2, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, 0], a[:, 1])  # a re-encode is not the original


def test_a_part_is_marked_only_above_its_own_threshold() -> None:
    from fakeface.part_pictures import flagged_parts

    scores = np.array([[0.5, 0.2, 0.9, np.nan], [0.1, 0.1, 0.1, 0.1]])
    thresholds = {"left_eye": 0.4, "right_eye": 0.1, "nose": 0.95, "mouth": 0.0}
    assert flagged_parts(scores, thresholds) == [["left_eye", "right_eye"], ["right_eye", "mouth"]]


def test_evaluation_pictures_of_a_part_model_mark_its_parts(fitted, split, tmp_path) -> None:
    from fakeface.evaluate import write_evaluation_artifacts
    from fakeface.part_training import part_thresholds

    model, _, _ = fitted
    _, val = split
    out = np.asarray(model.predict(val["image"], verbose=0))
    written = write_evaluation_artifacts(
        tmp_path,
        model=model,
        images=val["image"],
        y_true=val["label"],
        scores=out[:, 0],
        threshold=0.5,
        levels=["easy" if y else None for y in val["label"]],
        history=None,
        image_ids=[f"id{i}" for i in range(len(out))],
        paths=["" for _ in out],
        gradcam_examples=2,
        regions=list(val["regions"]),
        part_scores=out[:, 1:5],
        part_thresholds=part_thresholds(out, val["regions"], val["label"]),
    )
    picture = tmp_path / "parts_easy.png"
    assert picture in written and picture.stat().st_size > 10_000


def test_the_feed_order_does_not_change_the_heads(split) -> None:
    from fakeface.models.factory import build_model
    from fakeface.part_training import fit_part_model

    train, val = split
    train = {**train, "image_id": np.array([f"id{i:03d}" for i in range(len(train["image"]))])}
    flipped = {k: v[::-1].copy() for k, v in train.items()}
    outs = []
    for order in (train, flipped):
        model = build_model("part_heads")
        fit_part_model(model, order, val, reencodes=1, seed=0, size=600)
        outs.append(np.asarray(model.predict(val["image"][:4], verbose=0)))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
