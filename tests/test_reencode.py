"""The platform re-encode: size, format, sampling, no metadata, a pure function of the bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, JpegImagePlugin

from fakeface.reencode import platform_reencode, reencode_tree
from tests.conftest import encode, gradient_image


def exif_jpeg() -> bytes:
    image = Image.fromarray(gradient_image(120, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "camera"
    out = io.BytesIO()
    image.save(out, "JPEG", quality=97, progressive=True, exif=exif.tobytes())
    return out.getvalue()


def test_reencode_is_a_baseline_512px_q85_420_jpeg_without_metadata() -> None:
    data = platform_reencode(exif_jpeg())
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (512, 512) and image.mode == "RGB"
        assert not image.info.get("progressive") and not image.info.get("progression")
        assert "exif" not in image.info and "icc_profile" not in image.info
        assert JpegImagePlugin.get_sampling(image) == 2  # 4:2:0
        ref = io.BytesIO()
        Image.new("RGB", (8, 8)).save(ref, "JPEG", quality=85)
        with Image.open(ref) as q85:
            assert image.quantization == q85.quantization


def test_reencode_is_deterministic_and_changes_the_tables() -> None:
    source = encode(gradient_image(600, 600), quality=99)
    first = platform_reencode(source)
    assert first == platform_reencode(source)
    with Image.open(io.BytesIO(source)) as a, Image.open(io.BytesIO(first)) as b:
        assert a.quantization != b.quantization
        # Same picture: a smooth gradient survives a bilinear resize and q85 closely.
        small = np.asarray(a.convert("RGB").resize((512, 512), Image.Resampling.BILINEAR))
        assert np.abs(small.astype(int) - np.asarray(b).astype(int)).mean() < 3


def test_reencode_tree_mirrors_the_layout_and_skips_other_files(tmp_path) -> None:
    src = tmp_path / "src"
    (src / "training_fake").mkdir(parents=True)
    (src / "training_real").mkdir()
    (src / "training_fake" / "easy_1_1000.jpg").write_bytes(encode(gradient_image()))
    (src / "training_real" / "real_00001.JPG").write_bytes(encode(gradient_image(), "PNG"))
    (src / "notes.txt").write_text("not an image")
    dst = tmp_path / "dst"
    assert reencode_tree(src, dst, (".jpg", ".png")) == 2
    written = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert written == ["training_fake/easy_1_1000.jpg", "training_real/real_00001.JPG"]
    again = (dst / "training_fake" / "easy_1_1000.jpg").read_bytes()
    assert again == platform_reencode((src / "training_fake" / "easy_1_1000.jpg").read_bytes())


def test_reencode_pixels_keeps_the_shape_and_changes_the_bytes() -> None:
    import numpy as np

    from fakeface.reencode import UNSEEN_SETTING, random_reencode, reencode_pixels

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    out = reencode_pixels(image, **UNSEEN_SETTING)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() > 5  # q60 of noise is far from the noise
    a = random_reencode(image, np.random.default_rng(1))
    b = random_reencode(image, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
