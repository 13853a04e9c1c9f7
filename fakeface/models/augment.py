"""The study's augmentation set: names, default probabilities and the pipeline builder."""

from __future__ import annotations

import keras

from fakeface.models.layers import AUGMENTATION_LAYERS, AugmentationPipeline

# name -> layer class: 15 augmentation classes + 2 variants (per-channel noise, strong edges)
AUGMENTATIONS: dict[str, type] = dict(AUGMENTATION_LAYERS)

# {name: per-image probability}; the order is the order of application in the pipeline
# (photometric edits first, then filters, then sensor noise, and JPEG last as in real uploads).
DEFAULT_AUGMENTATION_PROBS: dict[str, float] = {
    "RandAugment": 0.2,
    "AddToHueAndSaturation": 0.1,
    "SigmoidContrast": 0.1,
    "CLAHE": 0.05,
    "AllChannelsCLAHE": 0.05,
    "Invert": 0.05,
    "Solarize": 0.05,
    "MeanShiftBlur": 0.1,
    "Sharpen": 0.1,
    "Emboss": 0.05,
    "EdgeDetect": 0.05,
    "EdgeDetectStrong": 0.02,
    "DirectedEdgeDetect": 0.05,
    "BlendAlphaSimplexNoise": 0.05,
    "AdditiveGaussianNoise": 0.1,
    "AdditiveGaussianNoisePerChannel": 0.1,
    "JpegCompression": 0.2,
}


def build_augmenter(
    probs: dict[str, float], seed: int | None = None, name: str = "augment"
) -> keras.layers.Layer:
    """Build the pipeline layer applying each named augmentation with its probability."""
    for aug, p in probs.items():
        if aug not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {aug!r}; choose from {sorted(AUGMENTATIONS)}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"augmentation {aug!r}: probability {p} not in [0, 1]")
    return AugmentationPipeline(probs=probs, seed=seed, name=name)
