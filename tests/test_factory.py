"""Model variants: build, predict from uint8 of any size, architecture, save/load, import hook."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from fakeface.errors import ModelError
from fakeface.models.augment import DEFAULT_AUGMENTATION_PROBS
from fakeface.models.factory import (
    VARIANTS,
    build_model,
    input_size,
    list_variants,
    register_variant,
    set_base_trainable,
)
from fakeface.models.layers import AugmentationPipeline

SIZES = [(40, 56), (97, 131)]  # two input sizes, neither the model's own


def _uint8(n: int, hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *hw, 3), dtype=np.uint8)


def _check_predictions(model: keras.Model, n: int = 2, eager: bool = False) -> None:
    assert model.inputs[0].dtype == "uint8"
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)
    for hw in SIZES:
        x = _uint8(n, hw)
        # eager calls skip tracing predict() once per input size (seconds for big bases on CPU)
        pred = keras.ops.convert_to_numpy(model(x)) if eager else model.predict(x, verbose=0)
        assert pred.shape == (n, 1) and pred.dtype == np.float32
        assert np.all((pred >= 0.0) & (pred <= 1.0))


@pytest.fixture(scope="module")
def vgg16() -> keras.Model:
    return build_model("vgg16")


def test_registry_and_input_sizes():
    assert set(list_variants()) >= {"simple", "custom", "custom_aug", "vgg16", "efficientnetb4"}
    expected = {"simple": 600, "custom": 150, "custom_aug": 150, "vgg16": 224}
    assert {name: input_size(name) for name in expected} == expected
    assert input_size("efficientnetb4") == 380
    with pytest.raises(ValueError, match=r"unknown variant 'resnet'; choose one of .*custom"):
        build_model("resnet")
    with pytest.raises(ValueError, match="unknown variant"):
        input_size("resnet")


def test_registry_is_open_for_new_variants():
    @register_variant("tiny_test_variant", input_size=16)
    def _tiny(x, *, weights):
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)

    try:
        model = build_model("tiny_test_variant")
        _check_predictions(model)
        with pytest.raises(ValueError, match="already registered"):
            register_variant("tiny_test_variant", input_size=16)(_tiny)
    finally:
        VARIANTS.pop("tiny_test_variant", None)


def test_simple_architecture():
    model = build_model("simple")
    assert model.get_layer("flatten").output.shape[-1] == 73_728
    assert model.get_layer("pool1").output.shape[1:] == (197, 197, 8)
    assert model.count_params() == 4_722_577
    _check_predictions(model)


@pytest.mark.parametrize("variant", ["custom", "custom_aug"])
def test_custom_architecture(variant):
    model = build_model(variant)
    shapes = [model.get_layer(f"pool{i}").output.shape[1:3] for i in range(1, 5)]
    assert shapes == [(75, 75), (38, 38), (19, 19), (5, 5)]
    assert model.get_layer("flatten").output.shape[-1] == 400
    assert model.count_params() == 10_921
    _check_predictions(model)


def test_augmentation_only_where_asked():
    names = lambda m: [layer.name for layer in m.layers]  # noqa: E731
    assert "augment" not in names(build_model("custom"))
    aug = build_model("custom_aug", seed=3).get_layer("augment")
    assert isinstance(aug, AugmentationPipeline)
    assert aug.probs == DEFAULT_AUGMENTATION_PROBS and aug.seed == 3
    assert "augment" not in names(build_model("custom_aug", augment={}))
    custom = build_model("custom", augment={"Invert": 1.0})
    assert custom.get_layer("augment").probs == {"Invert": 1.0}
    assert names(custom).index("resize") < names(custom).index("augment")
    assert names(custom).index("augment") < names(custom).index("rescale")
    with pytest.raises(ValueError, match="'Blurr'"):
        build_model("custom_aug", augment={"Blurr": 0.1})


def test_custom_aug_trains_in_graph_mode_and_is_deterministic_at_inference():
    model = build_model("custom_aug", augment={k: 0.5 for k in DEFAULT_AUGMENTATION_PROBS})
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = _uint8(4, (60, 60), seed=1)
    history = model.fit(x, np.array([0, 1, 0, 1], "float32"), batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
    augment = model.get_layer("augment")
    resized = keras.ops.cast(keras.ops.convert_to_tensor(_uint8(2, (150, 150))), "float32")
    assert not np.allclose(keras.ops.convert_to_numpy(augment(resized, training=True)), resized)


def test_output_is_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model("custom_aug")
        assert model.get_layer("conv1").compute_dtype == "float16"
        assert model.get_layer("augment").compute_dtype == "float32"
        assert model(_uint8(2, (50, 50)), training=True).dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)


def test_weights_argument_is_checked(tmp_path):
    with pytest.raises(ValueError, match="no pretrained base"):
        build_model("custom", weights="imagenet")
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ModelError, match=r"nope\.weights\.h5"):
        build_model("vgg16", weights=str(missing))


def test_vgg16_predicts_loads_a_weights_file_and_freezes(vgg16, tmp_path):
    _check_predictions(vgg16, n=1)
    base = vgg16.get_layer("base")
    assert vgg16.get_layer("vgg_preprocess") is not None
    assert vgg16.count_params() == 14_715_201

    path = tmp_path / "vgg16_base.weights.h5"
    base.save_weights(path)
    loaded = build_model("vgg16", weights=str(path)).get_layer("base")
    for a, b in zip(base.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    set_base_trainable(vgg16, False)
    assert not base.trainable and vgg16.get_layer("score").trainable
    assert len(vgg16.trainable_weights) == 2  # the head: score kernel + bias
    set_base_trainable(vgg16, True, fine_tune_layers=4)
    trainable = [layer.name for layer in base.layers if layer.trainable]
    assert trainable == [layer.name for layer in base.layers[-4:]]
    set_base_trainable(vgg16, True, fine_tune_layers=0)
    assert all(layer.trainable for layer in base.layers)
    with pytest.raises(ValueError, match="no 'base'"):
        set_base_trainable(build_model("custom"), False)


def test_efficientnetb4_predicts():
    model = build_model("efficientnetb4")
    assert model.get_layer("base").output.shape[-1] == 1792
    assert model.count_params() == 17_675_616
    _check_predictions(model, n=1, eager=True)


def _assert_reloads_in_fresh_process(models: dict[str, keras.Model], tmp_path) -> None:
    """A fresh interpreter loads the .keras files after `import fakeface` alone (the hook)."""
    x = _uint8(3, (70, 90), seed=5)
    np.save(tmp_path / "x.npy", x)
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", model.predict(x, verbose=0))

    script = textwrap.dedent(
        f"""
        import sys
        import fakeface
        assert "keras" not in sys.modules and "tensorflow" not in sys.modules, "import not light"
        import keras, numpy as np
        d = {str(tmp_path)!r}
        x = np.load(d + "/x.npy")
        for name in {list(models)!r}:
            m = keras.saving.load_model(d + "/" + name + ".keras")
            np.testing.assert_allclose(m.predict(x, verbose=0), np.load(d + "/" + name + ".npy"),
                                       rtol=1e-5, atol=1e-6)
            if name == "custom_aug":
                aug = m.get_layer("augment")
                assert type(aug).__module__ == "fakeface.models.layers"
                assert len(aug.augmenters) == 17
        print("OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_saved_models_load_in_a_fresh_process(tmp_path):
    models = {"custom_aug": build_model("custom_aug", seed=1), "simple": build_model("simple")}
    _assert_reloads_in_fresh_process(models, tmp_path)


@pytest.mark.slow
def test_saved_vgg16_loads_in_a_fresh_process(tmp_path, vgg16):
    _assert_reloads_in_fresh_process({"vgg16": vgg16}, tmp_path)


def test_import_hook_never_breaks_keras_import():
    """If registering the layers fails, `import keras` still works and a warning says why."""
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["fakeface.models.layers"] = None  # makes importing the layers fail
        import fakeface
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import keras
        assert keras.ops is not None
        assert any("could not register" in str(w.message) for w in caught), caught
        assert not any(getattr(f, "fakeface_keras_hook", False) for f in sys.meta_path)
        print("OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_region_head_twin_shares_weights_and_the_scored_model_has_one_output():
    from fakeface.models.factory import build_model, get_variant, with_region_head

    assert get_variant("residual_sbi").self_blend > 0
    assert get_variant("residual_sbi").region_weight > 0
    model = build_model("residual_sbi")
    twin = with_region_head(model)
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    out = twin.predict(images, verbose=0)
    assert out["regions"].shape == (3, 3) and out["score"].shape == (3, 1)
    np.testing.assert_allclose(out["score"], model.predict(images, verbose=0), rtol=1e-5)
    # training the twin moves the scored model's weights (they are the same variables)
    before = model.get_layer("score").get_weights()[0].copy()
    twin.compile(optimizer="adam", loss={"score": "binary_crossentropy", "regions": "mse"})
    twin.fit(images, {"score": np.ones((3, 1)), "regions": np.ones((3, 3))}, epochs=1, verbose=0)
    assert not np.allclose(before, model.get_layer("score").get_weights()[0])
    assert len(model.outputs) == 1
