"""Model variants: one registry (name -> builder) and ``build_model``.

Every model takes uint8 RGB images of any size, ``(None, None, 3)``, and does all preprocessing
in-graph: cast to float32 -> ``Resizing(S, S)`` -> [augmentation, training only] ->
the variant's own preprocessing -> body -> one sigmoid unit (float32, also under mixed
precision). Add a variant with ``@register_variant(name, input_size=...)`` on a function
``body(x, *, weights) -> output tensor`` receiving the float32 [0, 255] resized image tensor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

from fakeface.errors import ModelError
from fakeface.models.augment import DEFAULT_AUGMENTATION_PROBS, build_augmenter
from fakeface.models.layers import CaffePreprocess, CastToFloat32
from fakeface.models.part_model import PART_SIZE, part_heads_outputs
from fakeface.models.parts import FacePartStatistics
from fakeface.models.texture import (
    GradientOrientationHistogram,
    LocalBinaryPatternHistogram,
    RadialBasisKernel,
)

WEIGHT_CHOICES = ("none", "imagenet", "<path to a weights file>")


@dataclass(frozen=True)
class Variant:
    """A registered model variant."""

    name: str
    input_size: int
    body: Callable[..., Any]
    pretrained: bool = False  # accepts weights="imagenet" / a weights file
    default_augment: bool = False  # uses DEFAULT_AUGMENTATION_PROBS when augment is None
    description: str = ""
    # Training recipe, read by the training job (the scored model is the same either way):
    self_blend: float = 0.0  # self-blended fakes per real in each batch (fakeface.selfblend)
    region_weight: float = 0.0  # loss weight of a region-flag head (eyes, nose, mouth)
    learning_rate_scale: float = 1.0  # multiplies train.learning_rate for this variant
    # Kernel heads solved exactly (texture.fit_kernel_heads) instead of by SGD epochs.
    exact_head: bool = False
    # The body reads the raw uint8 input itself (no cast, resize or augmentation in front):
    # the part recipe measures the pixels as decoded. Its heads are fitted by
    # fakeface.part_training with part labels; the output is (N, 6) (fakeface.outputs).
    part_heads: bool = False


VARIANTS: dict[str, Variant] = {}


def register_variant(
    name: str,
    *,
    input_size: int,
    pretrained: bool = False,
    default_augment: bool = False,
    description: str = "",
    self_blend: float = 0.0,
    region_weight: float = 0.0,
    learning_rate_scale: float = 1.0,
    exact_head: bool = False,
    part_heads: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``body(x, *, weights)`` as variant ``name``."""

    def decorator(body: Callable[..., Any]) -> Callable[..., Any]:
        if name in VARIANTS:
            raise ValueError(f"variant {name!r} is already registered")
        VARIANTS[name] = Variant(
            name,
            int(input_size),
            body,
            pretrained,
            default_augment,
            description,
            float(self_blend),
            float(region_weight),
            float(learning_rate_scale),
            bool(exact_head),
            bool(part_heads),
        )
        return body

    return decorator


def list_variants() -> list[str]:
    """Names of the registered variants, sorted."""
    return sorted(VARIANTS)


def get_variant(name: str) -> Variant:
    """The registered variant ``name``; ValueError listing the choices if unknown."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown variant {name!r}; choose one of {', '.join(list_variants())}"
        ) from None


def input_size(variant: str) -> int:
    """Side S of the square S x S image the variant resizes its inputs to."""
    return get_variant(variant).input_size


def build_model(
    variant: str,
    *,
    weights: str = "none",
    augment: dict[str, float] | None = None,
    seed: int = 0,
) -> keras.Model:
    """Build an uncompiled model for ``variant`` taking uint8 (None, None, 3) RGB images.

    ``weights``: "none" (random init), "imagenet" (downloads) or a local weights file for the
    pretrained base. ``augment``: {augmentation name: probability} inserted after resizing
    (training only); None means no augmentation, except for variants that augment by default
    (``custom_aug``), which then use DEFAULT_AUGMENTATION_PROBS. ``seed`` seeds augmentation.
    """
    spec = get_variant(variant)
    if weights != "none" and not spec.pretrained:
        raise ValueError(f"variant {variant!r} has no pretrained base; use weights='none'")
    if augment is None and spec.default_augment:
        augment = DEFAULT_AUGMENTATION_PROBS

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    if spec.part_heads:
        if augment:
            raise ValueError(f"variant {variant!r} takes no in-graph augmentation")
        return keras.Model(inputs, spec.body(inputs, weights=weights), name=f"fakeface_{variant}")
    x = CastToFloat32(name="to_float32")(inputs)
    x = layers.Resizing(spec.input_size, spec.input_size, name="resize", dtype="float32")(x)
    if augment:
        x = build_augmenter(augment, seed=seed, name="augment")(x)
    outputs = spec.body(x, weights=weights)
    return keras.Model(inputs, outputs, name=f"fakeface_{variant}")


def _score(x):
    """The single sigmoid output unit, float32 so it is stable under mixed precision."""
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(x)


# ---------------------------------------------------------------------------------------------
# the study's own CNNs
# ---------------------------------------------------------------------------------------------


@register_variant("simple", input_size=600, description="the study's simple CNN (600 px)")
def _simple(x, *, weights: str):
    x = layers.Rescaling(1.0 / 255, name="rescale", dtype="float32")(x)
    x = layers.Conv2D(8, 8, activation="relu", name="conv1")(x)  # 593
    x = layers.MaxPooling2D(3, name="pool1")(x)  # 197
    x = layers.Conv2D(8, 6, activation="relu", name="conv2")(x)  # 192
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 96
    x = layers.Flatten(name="flatten")(x)  # 96 * 96 * 8 = 73,728
    x = layers.Dense(64, activation="relu", name="dense")(x)
    return _score(x)


def _custom_body(x):
    x = layers.Rescaling(1.0 / 255, name="rescale", dtype="float32")(x)
    # (filters, pool size, pool padding): 150 -> 75 -> 38 -> 19 -> 5 (ceil(19 / 4), "same")
    for i, (filters, pool, padding) in enumerate(
        [(8, 2, "valid"), (8, 2, "same"), (16, 2, "valid"), (16, 4, "same")], start=1
    ):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(pool, padding=padding, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)  # 5 * 5 * 16 = 400
    x = layers.Dropout(0.5, name="dropout1")(x)
    x = layers.Dense(16, name="dense")(x)
    x = layers.LeakyReLU(name="leaky_relu")(x)
    x = layers.Dropout(0.5, name="dropout2")(x)
    return _score(x)


@register_variant("custom", input_size=150, description="the study's custom CNN (150 px)")
def _custom(x, *, weights: str):
    return _custom_body(x)


@register_variant(
    "custom_aug",
    input_size=150,
    default_augment=True,
    description="custom CNN with the augmentation pipeline (training only)",
)
def _custom_aug(x, *, weights: str):
    return _custom_body(x)


# ---------------------------------------------------------------------------------------------
# our own: the best from-scratch CNN of the accuracy study (research/accuracy/RESULTS.md)
# ---------------------------------------------------------------------------------------------


def residual_block(x, filters: int, stride: int, name: str):
    """Two 3x3 conv + batch norm with a (projected) shortcut."""
    shortcut = x
    x = layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=name + "_c1"
    )(x)
    x = layers.BatchNormalization(name=name + "_bn1")(x)
    x = layers.Activation("relu", name=name + "_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_c2")(x)
    x = layers.BatchNormalization(name=name + "_bn2")(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=name + "_sc")(
            shortcut
        )
        shortcut = layers.BatchNormalization(name=name + "_scbn")(shortcut)
    x = layers.Add(name=name + "_add")([x, shortcut])
    return layers.Activation("relu", name=name + "_out")(x)


def residual_features(x, width: int = 16, dropout: float = 0.3):
    """Stem + 4 residual stages (2w, 4w, 8w, 8w; stride 2 each) + global average pool."""
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for i, mult in enumerate((2, 4, 8, 8)):
        x = residual_block(x, width * mult, 2, f"block{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dropout(dropout, name="dropout")(x)


@register_variant(
    "residual", input_size=64, description="residual CNN from scratch (64 px), flip + shift"
)
def _residual(x, *, weights: str):
    return _score(residual_features(_residual_input(x)))


def _residual_input(x):
    """The residual CNN's input: flip, ±4 px shift (training only), then [-1, 1]."""
    # Light geometric augmentation only: the study's colour/blur ones erase editing traces.
    x = layers.RandomFlip("horizontal", name="flip")(x)
    x = layers.RandomTranslation(4 / 64, 4 / 64, fill_mode="reflect", name="shift")(x)
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale", dtype="float32")(x)


@register_variant(
    "residual_aux",
    input_size=64,
    region_weight=0.5,
    description="residual + a region-flag head in training (which of eyes/nose/mouth)",
)
def _residual_aux(x, *, weights: str):
    return _residual(x, weights=weights)


@register_variant(
    "residual_sbi",
    input_size=64,
    self_blend=0.5,
    region_weight=0.5,
    description="residual_aux + self-blended fakes made on the fly from training reals",
)
def _residual_sbi(x, *, weights: str):
    return _residual(x, weights=weights)


@register_variant(
    "texture_kernel",
    input_size=160,
    # A convex head on fixed features: 5x the CNN rate converges in the same 15 epochs
    # (research/accuracy/kernel_probe.py: AUC 0.668 at 0.002 vs 0.682 at 0.01).
    learning_rate_scale=5.0,
    description="fixed HOG + LBP maps (160 px) -> RBF kernel on training prototypes -> logistic",
)
def _texture_kernel(x, *, weights: str):
    logit = _texture_kernel_logit(x)
    return layers.Activation("sigmoid", dtype="float32", name="score")(logit)


def _texture_kernel_logit(x):
    """HOG (8 px cells) + LBP (16 px cells) -> RBF kernel on training prototypes -> a logit."""
    # The study's best detector was an RBF SVM on these descriptors; this is the same kernel
    # machine in-graph, fitted with log-loss. No augmentation: the maps are positional.
    hog = GradientOrientationHistogram(orientations=9, cell_size=8, name="hog")(x)
    lbp = LocalBinaryPatternHistogram(radius=1, cell_size=16, name="lbp")(x)
    features = layers.Concatenate(name="texture_features")(
        [layers.Flatten(name="hog_flat")(hog), layers.Flatten(name="lbp_flat")(lbp)]
    )
    return _kernel_logit(features)


def _kernel_logit(features, prefix: str = ""):
    """Feature vectors -> RBF kernel on 1,024 training prototypes -> one logistic unit."""
    similarities = RadialBasisKernel(n_prototypes=1024, name=f"{prefix}kernel")(features)
    return layers.Dense(
        1,
        dtype="float32",
        kernel_regularizer=keras.regularizers.L2(1e-4),
        name=f"{prefix}kernel_logit",
    )(similarities)


@register_variant(
    "part_seams",
    input_size=600,
    # SGD on this head stopped short of the optimum (fold 0 AUC 0.629 against 0.68 for the
    # same kernel solved exactly in research): the convex head is solved by L-BFGS.
    exact_head=True,
    description="face mesh -> native-resolution colour / noise / seam-ring statistics of the"
    " eyes, nose and mouth -> RBF kernel on training prototypes -> logistic",
)
def _part_seams(x, *, weights: str):
    return layers.Activation("sigmoid", dtype="float32", name="score")(_part_logit(x))


def _part_logit(x, prefix: str = ""):
    """Part statistics of the native-resolution image -> RBF kernel -> a logit."""
    return _kernel_logit(FacePartStatistics(name="part_statistics")(x), prefix)


@register_variant(
    "part_texture",
    input_size=600,
    exact_head=True,
    description="part_seams' kernel (600 px) + texture_kernel's HOG + LBP kernel (160 px),"
    " logits summed",
)
def _part_texture(x, *, weights: str):
    # research/accuracy/parts_texture_probe.py: the two kernels' fused decision reaches AUC
    # 0.719 on the re-encoded copy (pose-balanced 0.672) against 0.687 / 0.654 and
    # 0.678 / 0.619 apart: the parts read local edits, the texture a global signature.
    part_logit = _part_logit(x, prefix="part_")
    small = layers.Resizing(160, 160, name="texture_resize", dtype="float32")(x)
    logit = layers.Add(name="logit")([part_logit, _texture_kernel_logit(small)])
    return layers.Activation("sigmoid", dtype="float32", name="score")(logit)


@register_variant(
    "part_heads",
    input_size=PART_SIZE,
    part_heads=True,
    description="face mesh -> each part (eyes, nose, mouth) against its own photo at 600 px ->"
    " one RBF kernel machine per part on its own flag -> noisy-OR; outputs P(fake) and the"
    " four part scores",
)
def _part_heads(pixels, *, weights: str):
    # research/accuracy/part_heads_probe.py and README "Accuracy": per-part heads with
    # re-encode augmentation in training, against one model per photo.
    return part_heads_outputs(pixels)


@register_variant(
    "texture_kernel_exact",
    input_size=160,
    exact_head=True,
    description="texture_kernel with its head solved exactly (L-BFGS) instead of 15 SGD epochs",
)
def _texture_kernel_exact(x, *, weights: str):
    return _texture_kernel(x, weights=weights)


@register_variant(
    "texture_kernel_sbi",
    input_size=160,
    learning_rate_scale=5.0,
    self_blend=0.5,
    description="texture_kernel + self-blended fakes made on the fly from training reals",
)
def _texture_kernel_sbi(x, *, weights: str):
    return _texture_kernel(x, weights=weights)


@register_variant(
    "texture_residual",
    input_size=160,
    self_blend=0.5,
    description="texture kernel machine + residual_sbi CNN (64 px), logits summed, trained jointly",
)
def _texture_residual(x, *, weights: str):
    kernel_logit = _texture_kernel_logit(x)
    # The kernel head is a convex problem that wants ~5x the CNN's learning rate (see
    # texture_kernel); scaling its logit by 5 gives it that under Adam, whose steps do not
    # depend on the gradient's scale, while the CNN keeps train.learning_rate.
    kernel_logit = layers.Rescaling(5.0, name="kernel_logit_scale")(kernel_logit)
    cnn = _residual_input(layers.Resizing(64, 64, name="cnn_resize", dtype="float32")(x))
    cnn_logit = layers.Dense(1, name="cnn_logit")(residual_features(cnn))
    logit = layers.Add(name="logit")([kernel_logit, cnn_logit])
    return layers.Activation("sigmoid", dtype="float32", name="score")(logit)


def with_region_head(model: keras.Model, n_regions: int = 3) -> keras.Model:
    """A training twin of `model` with outputs {"score", "regions"}, sharing its weights.

    The head reads the features the "score" unit reads; the scored model stays `model`.
    """
    features = model.get_layer("score").input
    regions = layers.Dense(n_regions, activation="sigmoid", dtype="float32", name="regions")(
        features
    )
    return keras.Model(
        model.inputs, {"score": model.outputs[0], "regions": regions}, name=f"{model.name}_train"
    )


# ---------------------------------------------------------------------------------------------
# transfer learning on keras.applications bases
# ---------------------------------------------------------------------------------------------


def _application(factory: Callable[..., keras.Model], size: int, weights: str) -> keras.Model:
    """The headless, average-pooled base named "base", with weights none/imagenet/a file."""
    if weights not in ("none", "imagenet") and not os.path.isfile(weights):
        raise ModelError(
            f"weights file {weights!r} not found; "
            "pass weights='none', 'imagenet' or the path of an existing weights file"
        )
    base = factory(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(size, size, 3),
        pooling="avg",
        name="base",
    )
    if weights not in ("none", "imagenet"):
        try:
            base.load_weights(weights)
        except Exception as exc:  # wrong architecture / corrupt file
            raise ModelError(f"cannot load weights file {weights!r} into the base: {exc}") from exc
    return base


def _pretrained_head(x, base: keras.Model, weights: str, dropout: float):
    # A pretrained base runs in inference mode (frozen BatchNorm statistics, also while
    # fine-tuning); a randomly initialised one must train its BatchNorm statistics.
    x = base(x, training=False) if weights != "none" else base(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return _score(x)


@register_variant("vgg16", input_size=224, pretrained=True, description="VGG16 base (224 px)")
def _vgg16(x, *, weights: str):
    base = _application(keras.applications.VGG16, 224, weights)
    x = CaffePreprocess(name="vgg_preprocess")(x)
    return _pretrained_head(x, base, weights, dropout=0.5)


@register_variant(
    "efficientnetb4", input_size=380, pretrained=True, description="EfficientNetB4 base (380 px)"
)
def _efficientnetb4(x, *, weights: str):
    # EfficientNet rescales/normalises inside the application: feed it 0..255.
    base = _application(keras.applications.EfficientNetB4, 380, weights)
    return _pretrained_head(x, base, weights, dropout=0.4)  # B4's own top dropout rate


def set_base_trainable(model: keras.Model, trainable: bool, fine_tune_layers: int = 0) -> None:
    """Freeze the "base" (trainable=False) or unfreeze its last ``fine_tune_layers`` layers.

    ``fine_tune_layers <= 0`` with trainable=True unfreezes the whole base. BatchNormalization
    layers stay frozen when fine-tuning. Recompile the model afterwards.
    """
    try:
        base = model.get_layer("base")
    except ValueError:
        raise ValueError(f"model {model.name!r} has no 'base' layer to (un)freeze") from None
    if not trainable:
        base.trainable = False
        return
    base.trainable = True
    cutoff = len(base.layers) - fine_tune_layers if fine_tune_layers > 0 else 0
    for i, layer in enumerate(base.layers):
        frozen = i < cutoff or isinstance(layer, layers.BatchNormalization)
        layer.trainable = not frozen
