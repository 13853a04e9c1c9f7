"""Tests for fakeface.models.forensic: shapes, any input size, serialization round trip."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fakeface.models import forensic  # noqa: E402


def _images(n=2, size=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_high_pass_layer_shape_and_values():
    layer = forensic.HighPassResiduals()
    flat = np.full((1, 8, 8, 3), 100.0, np.float32)
    out = keras.ops.convert_to_numpy(layer(flat))
    assert out.shape == (1, 8, 8, 6)
    assert np.allclose(out[..., :3], 100.0)
    assert np.allclose(out[:, 1:-1, 1:-1, 3:], 0.0)  # flat image has no residual inside
    assert layer.compute_output_shape((None, 8, 8, 3)) == (None, 8, 8, 6)


@pytest.mark.parametrize("size", [32, 50, 160])
def test_any_input_size_one_sigmoid_float32(size):
    model = forensic.build_forensic(seed=0, input_size=32, width=4, high_pass=True)
    out = model.predict(_images(size=size), verbose=0)
    assert out.shape == (2, 1) and out.dtype == np.float32
    assert ((out >= 0) & (out <= 1)).all()


def test_aux_head_and_inference_model():
    model = forensic.build_forensic(seed=0, input_size=32, width=4, aux_outputs=3)
    main, aux = model.predict(_images(), verbose=0)
    assert main.shape == (2, 1) and aux.shape == (2, 3)
    inf = forensic.inference_model(model)
    assert len(inf.outputs) == 1
    assert np.allclose(inf.predict(_images(), verbose=0), main)


def test_serialization_round_trip(tmp_path):
    model = forensic.build_forensic(seed=1, input_size=32, width=4, high_pass=True)
    x = _images(size=48)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert np.allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    cfg = forensic.HighPassResiduals(gain=2.0).get_config()
    assert forensic.HighPassResiduals.from_config(cfg).gain == 2.0


def test_seed_is_deterministic():
    a = forensic.build_forensic(seed=3, input_size=32, width=4)
    b = forensic.build_forensic(seed=3, input_size=32, width=4)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        assert np.array_equal(u, v)
