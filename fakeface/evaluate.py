"""Evaluation pictures (learning curves, ROC, confusion, scores, examples) and Grad-CAM.

Every ``plot_*`` function writes one PNG and returns its path. Figures are built on
``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``, so no global figure
state is left behind (safe in long training processes, threads and notebooks alike).

Grad-CAM explains the single sigmoid unit of the factory's models: it weights the last conv-like
feature map (also one inside the nested "base" of the transfer variants) by the gradient of the
fake *logit* and returns heatmaps in [0, 1] at the input image's resolution.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakeface.labels import parse_path_label
from fakeface.metrics import roc_auc

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

REGIONS = ("left_eye", "right_eye", "nose", "mouth")  # the order of a fake's 4 flag digits
FAKE_LEVELS = ("easy", "mid", "hard")
CLASS_NAMES = ("real", "fake")

# Region boxes (x0, y0, x1, y1) as fractions of the image width/height for aligned, roughly
# centred square face crops. Assumption: the real data set's faces sit like the typical-face
# prior in fakeface.selfblend (eye centres at x~0.405/0.665, y~0.49; nose tip y~0.62; mouth
# y~0.75), "left_eye" is the eye on the image's left (as in fakeface.synth), and the boxes do
# not overlap, so the four shares of one heatmap sum to at most 1.
DEFAULT_REGION_BOXES: dict[str, tuple[float, float, float, float]] = {
    "left_eye": (0.28, 0.45, 0.53, 0.55),
    "right_eye": (0.54, 0.45, 0.79, 0.55),
    "nose": (0.44, 0.55, 0.63, 0.68),
    "mouth": (0.36, 0.70, 0.71, 0.82),
}
# Columns of region_attention's result: one mass share per region, then the hit flag.
REGION_ATTENTION_COLUMNS = (*REGIONS, "top_region_replaced")

PREDICTION_COLUMNS = ("image_id", "path", "label", "level", "p_fake", "is_fake")

# Layers that only preprocess, pool or reshape: never the Grad-CAM feature map.
_NOT_FEATURE_LAYERS = (
    "InputLayer",
    "Rescaling",
    "Resizing",
    "Normalization",
    "CastToFloat32",
    "CaffePreprocess",
    "ZeroPadding2D",
    "Reshape",
    "Dropout",
    "SpatialDropout2D",
)


# ---------------------------------------------------------------------------------------------
# figure plumbing
# ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    """A pyplot-free figure on the Agg canvas (no display, no global registry)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG (creating folders) and release its memory."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    fig.clear()  # pyplot-free figures are garbage collected; clearing frees the artists now
    return out


def _message(ax: Any, text: str) -> None:
    """Put a centred note in an empty panel (missing class, no data, ...)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def plot_learning_curves(history: Mapping[str, Sequence[float]] | None, path: str | Path) -> Path:
    """Train vs validation curves per epoch (loss, accuracy, AUC first), one panel per metric."""
    history = {k: list(v) for k, v in (history or {}).items() if len(v)}
    bases = [k for k in history if not k.startswith("val_")]
    bases += [k[4:] for k in history if k.startswith("val_") and k[4:] not in bases]
    known = [m for m in ("loss", "accuracy", "auc") if m in bases]
    # The three the study reports come first; anything else logged per epoch follows.
    bases = (known + sorted(set(bases) - set(known)))[:6]
    fig = _figure(4.2 * max(len(bases), 1), 3.4)
    if not bases:
        _message(fig.add_subplot(1, 1, 1), "no per-epoch history")
        return _save(fig, path)
    for i, base in enumerate(bases, start=1):
        ax = fig.add_subplot(1, len(bases), i)
        for key, label, style in ((base, "train", "-o"), (f"val_{base}", "validation", "-s")):
            if key in history:
                values = history[key]
                ax.plot(range(1, len(values) + 1), values, style, ms=3, label=label)
        ax.set_title(base)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score threshold, from (0, 0) to (1, 1)."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    # One point per distinct score, so tied scores give a diagonal step like the AUC's tie rule.
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """ROC curves overlaid (label -> (y_true, scores)), AUC in the legend, chance diagonal."""
    fig = _figure(5.2, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "--", color="0.6", lw=1, label="chance")
    skipped = []
    for label, (y_true, scores) in curves.items():
        y = np.asarray(y_true).astype(int)
        if len(y) == 0 or y.min() == y.max():
            skipped.append(label)  # a ROC curve needs both classes
            continue
        fpr, tpr = roc_curve(y, scores)
        ax.plot(fpr, tpr, lw=1.8, label=f"{label} (AUC {roc_auc(y, scores):.3f}, n={len(y)})")
    if skipped:
        ax.text(
            0.98, 0.02, "one class only: " + ", ".join(skipped), ha="right", va="bottom",
            transform=ax.transAxes, fontsize=8, color="0.4",
        )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (reals flagged)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_title("ROC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """2x2 counts, rows = true class (real, fake), columns = predicted class."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_pred).astype(int)
    return np.array([[int(((y == t) & (p == q)).sum()) for q in (0, 1)] for t in (0, 1)])


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, path: str | Path) -> Path:
    """Confusion matrix as counts and row-normalised (recall per true class), side by side."""
    counts = confusion_counts(y_true, y_pred)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    fig = _figure(9.0, 4.0)
    for i, (values, title) in enumerate(((counts, "counts"), (rates, "row-normalised")), 1):
        ax = fig.add_subplot(1, 2, i)
        shown = np.nan_to_num(values.astype(float) / max(np.nanmax(values), 1e-12), nan=0.0)
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        for r in range(2):
            for c in range(2):
                v = values[r, c]
                text = "—" if np.isnan(v) else (f"{v:.2f}" if i == 2 else f"{int(v)}")
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    color="white" if shown[r, c] > 0.6 else "black",
                )
        ax.set_xticks([0, 1], [f"pred {n}" for n in CLASS_NAMES])
        ax.set_yticks([0, 1], [f"true {n}" for n in CLASS_NAMES])
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_score_histogram(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, path: str | Path
) -> Path:
    """Histogram of p(fake) by true class with the decision threshold marked."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(0.0, 1.0, 31)
    for cls, color in ((0, "tab:blue"), (1, "tab:red")):
        if (y == cls).any():
            ax.hist(
                s[y == cls],
                bins=bins,
                alpha=0.55,
                color=color,
                label=f"{CLASS_NAMES[cls]} (n={(y == cls).sum()})",
            )
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("p(fake)")
    ax.set_ylabel("images")
    ax.set_title("scores by true class")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 view of a grey or RGB image for imshow."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img


def plot_confident_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    path: str | Path,
    k: int = 8,
) -> Path:
    """Top row: the k most confident correct predictions; bottom row: the k most confident wrong."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= threshold).astype(int)
    # Confidence in the predicted class, so confident reals (p near 0) count like confident fakes.
    confidence = np.where(pred == 1, s, 1.0 - s)
    rows = []
    for correct in (True, False):
        idx = np.flatnonzero((pred == y) == correct)
        rows.append(idx[np.argsort(-confidence[idx], kind="mergesort")][:k])
    cols = max(k, 1)
    fig = _figure(1.9 * cols, 4.6)
    for r, (idx, name) in enumerate(zip(rows, ("correct", "wrong"), strict=True)):
        for c in range(cols):
            ax = fig.add_subplot(2, cols, r * cols + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(idx):
                i = idx[c]
                ax.imshow(_as_rgb(images[i]))
                color = "tab:green" if r == 0 else "tab:red"
                ax.set_title(f"p={s[i]:.2f} true {CLASS_NAMES[y[i]]}", fontsize=8, color=color)
            elif c == 0:
                _message(ax, f"no {name}\npredictions")
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(f"most confident\n{name}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------


def _is_feature_layer(layer: Any) -> bool:
    """A layer whose 4-D output can be a Grad-CAM feature map (not preprocessing or pooling)."""
    name = type(layer).__name__
    if name in _NOT_FEATURE_LAYERS or "Pooling" in name or name.startswith("Random"):
        return False
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # unbuilt or called on several inputs
        return False
    return len(shape) == 4


def _find_feature_layer(model: keras.Model, layer_name: str | None) -> tuple[Any, Any]:
    """(the top-level layer holding the feature map, the feature layer itself)."""
    import keras

    top = list(model.layers)
    if layer_name is not None:
        # "base/top_conv" names a layer inside a nested model; a bare name is searched for
        # at the top level first, then inside nested models.
        outer, _, inner_name = layer_name.rpartition("/")
        found_named: tuple[Any, Any] | None = None
        for layer in top:
            if not outer and layer.name == layer_name:
                found_named = (layer, layer)
                break
        if found_named is None:
            for layer in top:
                if isinstance(layer, keras.Model) and outer in ("", layer.name):
                    try:
                        found_named = (layer, layer.get_layer(inner_name))
                        break
                    except ValueError:
                        continue
        if found_named is None:
            raise ValueError(f"model {model.name!r} has no layer {layer_name!r} (also not nested)")
        if len(found_named[1].output.shape) != 4:
            raise ValueError(f"layer {layer_name!r} has no 4-D (N, h, w, C) output for Grad-CAM")
        return found_named
    found: tuple[Any, Any] | None = None
    seen_conv = False
    for layer in top:
        inner = layer.layers if isinstance(layer, keras.Model) else [layer]
        for sub in inner:
            # Only maps after the first convolution (or a fixed texture descriptor map, for
            # the texture variants) carry spatial features worth explaining.
            seen_conv = (
                seen_conv
                or "Conv" in type(sub).__name__
                or getattr(sub, "spatial_descriptor", False)
            )
            if seen_conv and _is_feature_layer(sub):
                found = (layer, sub)
    if found is None:
        raise ValueError(f"model {model.name!r} has no 4-D convolutional feature map for Grad-CAM")
    return found


def _check_chain(model: keras.Model) -> None:
    """For a map inside a nested base the top level is re-run layer by layer: a chain only."""
    layers = model.layers
    for prev, layer in itertools.pairwise(layers):
        nodes = getattr(layer, "_inbound_nodes", [])
        sources = [
            t._keras_history.operation for node in nodes[:1] for t in node.input_tensors
        ]  # the first call is the one inside this model
        if len(sources) != 1 or sources[0] is not prev:
            raise ValueError(
                "Grad-CAM inside a nested model needs a sequential top level;"
                f" {layer.name!r} does not take exactly {prev.name!r}'s output"
            )


class _GradCam:
    """A model prepared for Grad-CAM: returns (feature map, fake logit) for a batch."""

    def __init__(self, model: keras.Model, layer_name: str | None) -> None:
        import keras

        holder, feature = _find_feature_layer(model, layer_name)
        # The first output is p(fake) (a training-only auxiliary head may follow it).
        out_layer = model.outputs[0]._keras_history.operation
        activation = getattr(getattr(out_layer, "activation", None), "__name__", "")
        # The sigmoid saturates for confident images (gradient -> 0): differentiate the logit.
        is_sigmoid_dense = type(out_layer).__name__ == "Dense" and activation == "sigmoid"
        self.logit_layer = out_layer if is_sigmoid_dense else None
        self.holder, self.feature = holder, feature
        self.name = feature.name if holder is feature else f"{holder.name}/{feature.name}"
        self.variables = [getattr(v, "value", v) for v in model.weights]
        self.sub = self.inner = None
        if holder is feature:
            # A top-level map: one functional sub-model, whatever the graph (skips, branches).
            head = out_layer.input if self.logit_layer is not None else model.outputs[0]
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            self.sub = keras.Model(inputs, [feature.output, head])
        else:
            # A map inside a nested base is not reachable from the outer graph's tensors:
            # re-run the (sequential) top level eagerly, the base as [feature map, base output]
            # from its own graph, so the gradient flows through the real base.
            _check_chain(model)
            self.layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
            inputs = holder.inputs[0] if len(holder.inputs) == 1 else holder.inputs
            self.inner = keras.Model(inputs, [feature.output, holder.output])

    def _logit(self, x: Any) -> Any:
        """The output Dense's pre-activation, in float32."""
        from keras import ops

        layer = self.logit_layer
        x = ops.matmul(ops.cast(x, "float32"), ops.cast(layer.kernel, "float32"))
        return x + ops.cast(layer.bias, "float32") if layer.use_bias else x

    def forward(self, x: Any) -> tuple[Any, Any]:
        """(feature map, fake logit or p(fake)) for a batch, on the active GradientTape."""
        from keras import ops

        if self.sub is not None:
            fmap, head = self.sub(x, training=False)
            out = self._logit(head) if self.logit_layer is not None else head
            return fmap, ops.cast(out, "float32")
        fmap = None
        for layer in self.layers:
            if layer is self.holder:
                fmap, x = self.inner(x, training=False)
            elif layer is self.logit_layer:
                x = self._logit(x)
            else:
                x = layer(x, training=False)
        return fmap, ops.cast(x, "float32")


def gradcam(
    model: keras.Model,
    images: np.ndarray,
    layer_name: str | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Grad-CAM heatmaps of p(fake), float32 (N, H, W) in [0, 1] at the images' resolution.

    ``layer_name``: the feature layer (top level or inside a nested base); default: the last
    4-D conv-like map (e.g. ``conv2`` for simple, ``bn4`` for custom, ``base/block5_conv3``
    for vgg16, ``base/top_activation`` for efficientnetb4).
    """
    import tensorflow as tf

    x_all = np.asarray(images)
    if x_all.ndim != 4 or x_all.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got shape {x_all.shape}")
    n, height, width = x_all.shape[:3]
    out = np.zeros((n, height, width), dtype=np.float32)
    if n == 0:
        return out
    cam_model = _GradCam(model, layer_name)
    for start in range(0, n, batch_size):
        x = tf.convert_to_tensor(x_all[start : start + batch_size].astype(np.uint8))
        with tf.GradientTape() as tape:
            # Frozen layers have no trainable variables, so nothing in them would be recorded:
            # watch every variable of the model explicitly.
            tape.watch(cam_model.variables)
            fmap, logit = cam_model.forward(x)
            target = tf.reduce_sum(logit)  # images are independent: one backward pass per batch
        grads = tape.gradient(target, fmap)
        if grads is None:
            raise ValueError(f"no gradient from the output to feature map {cam_model.name!r}")
        fmap = tf.cast(fmap, tf.float32)
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))[..., None]
        cam = tf.image.resize(cam, (height, width), method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1)
        # A map with no positive evidence stays all zero rather than being blown up from noise.
        cam = np.where(
            peak[:, None, None] > 1e-12, cam / np.maximum(peak, 1e-12)[:, None, None], 0.0
        )
        out[start : start + len(cam)] = np.clip(cam, 0.0, 1.0)
    return out


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 image with the heatmap blended in (jet colour map)."""
    import matplotlib

    rgb = _as_rgb(image).astype(np.float32)
    heat = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * rgb + alpha * heat, 0, 255).astype(np.uint8)


def plot_gradcam_overlays(
    model: keras.Model,
    images: np.ndarray,
    titles: Sequence[str],
    path: str | Path,
    layer_name: str | None = None,
) -> Path:
    """One row per image: the image (titled) and its Grad-CAM overlay."""
    images = np.asarray(images)
    heatmaps = gradcam(model, images, layer_name=layer_name)
    n = len(images)
    fig = _figure(6.0, 3.0 * max(n, 1))
    if n == 0:
        _message(fig.add_subplot(1, 1, 1), "no images")
        return _save(fig, path)
    for i in range(n):
        left = fig.add_subplot(n, 2, 2 * i + 1)
        left.imshow(_as_rgb(images[i]))
        left.set_title(titles[i] if i < len(titles) else "", fontsize=9)
        right = fig.add_subplot(n, 2, 2 * i + 2)
        right.imshow(overlay_heatmap(images[i], heatmaps[i]))
        right.set_title("Grad-CAM", fontsize=9)
        for ax in (left, right):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def region_attention(
    heatmaps: np.ndarray,
    regions: Sequence[str | None],
    boxes: Mapping[str, tuple[float, float, float, float]] | None = None,
) -> np.ndarray:
    """Per image: Grad-CAM mass share in each region box, and whether the top region was replaced.

    ``regions``: each image's flag string in REGIONS order (e.g. '1010': left eye and nose
    replaced); None or '' for reals/unknown. ``boxes``: region -> (x0, y0, x1, y1) as fractions of
    the image side (default DEFAULT_REGION_BOXES). Returns float32 (N, 5), columns
    REGION_ATTENTION_COLUMNS: four shares (sum <= 1 for non-overlapping boxes) and 1.0/0.0 for
    "the most-attended region is among the replaced ones" (NaN without flags or without mass).
    """
    maps = np.asarray(heatmaps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be (N, H, W), got shape {maps.shape}")
    if len(regions) != len(maps):
        raise ValueError(f"{len(maps)} heatmaps but {len(regions)} region flag strings")
    boxes = dict(DEFAULT_REGION_BOXES if boxes is None else boxes)
    missing = [r for r in REGIONS if r not in boxes]
    if missing:
        raise ValueError(f"boxes lack region(s) {', '.join(missing)}")
    n, height, width = maps.shape
    out = np.full((n, len(REGION_ATTENTION_COLUMNS)), np.nan, dtype=np.float32)
    total = maps.reshape(n, -1).sum(axis=1)
    for j, region in enumerate(REGIONS):
        x0, y0, x1, y1 = boxes[region]
        r0, r1 = int(np.floor(y0 * height)), int(np.ceil(y1 * height))
        c0, c1 = int(np.floor(x0 * width)), int(np.ceil(x1 * width))
        mass = maps[:, max(r0, 0) : min(r1, height), max(c0, 0) : min(c1, width)].sum(axis=(1, 2))
        out[:, j] = np.where(total > 0, mass / np.where(total > 0, total, 1.0), 0.0)
    for i, flags in enumerate(regions):
        if not flags or len(flags) != len(REGIONS) or set(flags) - {"0", "1"} or total[i] <= 0:
            continue
        top = int(np.argmax(out[i, : len(REGIONS)]))
        out[i, -1] = 1.0 if flags[top] == "1" else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# everything for one evaluation
# ---------------------------------------------------------------------------------------------


def level_of(label: int, level: str | None) -> str:
    """The per-level key metrics.classification_metrics uses: 'real', a fake level, 'unknown'."""
    if int(label) == 0:
        return "real"
    # pandas/petastorm give NaN or None for a missing level: both mean "unknown".
    return level if isinstance(level, str) and level else "unknown"


def write_predictions_csv(
    path: str | Path,
    image_ids: Sequence[Any],
    paths: Sequence[Any],
    y_true: np.ndarray,
    levels: Sequence[str | None],
    scores: np.ndarray,
    threshold: float,
) -> Path:
    """predictions.csv: image_id, path, label, level, p_fake, is_fake (prediction at threshold)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PREDICTION_COLUMNS)
        for image_id, p, y, level, s in zip(image_ids, paths, y_true, levels, scores, strict=True):
            writer.writerow(
                [image_id, p, int(y), level_of(y, level), f"{float(s):.6f}", int(s >= threshold)]
            )
    return out


def write_evaluation_artifacts(
    out_dir: str | Path,
    *,
    model: keras.Model | None,
    images: np.ndarray,
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    levels: Sequence[str | None],
    history: Mapping[str, Sequence[float]] | None,
    image_ids: Sequence[Any],
    paths: Sequence[Any],
    gradcam_examples: int = 3,
    regions: Sequence[str | None] | None = None,
    part_scores: np.ndarray | None = None,
    part_thresholds: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write all evaluation plots, per-level Grad-CAM overlays and predictions.csv; return paths.

    Grad-CAM shows, per fake level present, the ``gradcam_examples`` fakes scored most fake
    (titles carry id, p and the replaced-region flags: ``regions`` when given, else parsed from
    the file name). A failing Grad-CAM is logged and skipped: the pictures must never cost a
    finished training run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(y) == len(s) == len(levels) == len(image_ids) == len(paths) == len(images):
        raise ValueError("images, y_true, scores, levels, image_ids and paths differ in length")
    keys = np.array([level_of(yi, lv) for yi, lv in zip(y, levels, strict=True)], dtype=object)
    written = [
        plot_learning_curves(history, out / "learning_curves.png"),
        plot_roc(_roc_curves(y, s, keys), out / "roc.png"),
        plot_confusion(y, (s >= threshold).astype(int), out / "confusion.png"),
        plot_score_histogram(y, s, threshold, out / "score_histogram.png"),
        plot_confident_grid(images, y, s, threshold, out / "confident_grid.png"),
    ]
    fake_levels = [lv for lv in (*FAKE_LEVELS, "unknown") if (keys == lv).any()]

    def examples(level: str) -> tuple[np.ndarray, list[str]]:
        """The level's fakes scored most fake, and their titles."""
        idx = np.flatnonzero(keys == level)
        idx = idx[np.argsort(-s[idx], kind="mergesort")][:gradcam_examples]
        titles = [
            gradcam_title(paths[i], image_ids[i], s[i], level, _flags(paths[i], regions, i))
            for i in idx
        ]
        return idx, titles

    if part_scores is not None and part_thresholds and gradcam_examples > 0:
        # A part model explains itself by its part scores: the parts it marks, per level.
        from fakeface.part_pictures import plot_part_verdicts

        for level in fake_levels:
            idx, titles = examples(level)
            try:
                written.append(
                    plot_part_verdicts(
                        np.asarray(images)[idx],
                        np.asarray(part_scores)[idx],
                        part_thresholds,
                        titles,
                        out / f"parts_{level}.png",
                    )
                )
            except Exception:
                log.warning("part picture for level %s failed; skipping it", level, exc_info=True)
    elif model is not None and gradcam_examples > 0 and not has_spatial_map(model):
        # e.g. part_seams: statistics of mesh-placed parts, no map for Grad-CAM to weigh
        log.info("%s has no spatial feature map: no Grad-CAM pictures", model.name)
    elif model is not None and gradcam_examples > 0:
        for level in fake_levels:
            idx, titles = examples(level)
            try:
                written.append(
                    plot_gradcam_overlays(
                        model, np.asarray(images)[idx], titles, out / f"gradcam_{level}.png"
                    )
                )
            except Exception:
                log.warning(
                    "Grad-CAM for level %s failed; skipping its picture", level, exc_info=True
                )
    written.append(
        write_predictions_csv(out / "predictions.csv", image_ids, paths, y, levels, s, threshold)
    )
    return written


REGION_NAMES = ("left eye", "right eye", "nose", "mouth")


def gradcam_title(path: Any, image_id: str, score: float, level: str, flags: str) -> str:
    """'mid_37_1010.jpg p=0.81 mid: left eye, nose': the file, its score and what was pasted."""
    name = os.path.basename(str(path)) if path else str(image_id)[:12]
    parts = [name, f"p={score:.2f}", level]
    if len(flags) == len(REGION_NAMES) and set(flags) <= {"0", "1"}:
        replaced = [n for n, f in zip(REGION_NAMES, flags, strict=True) if f == "1"]
        parts[-1] += ": " + (", ".join(replaced) if replaced else "no region flagged")
    return "  ".join(parts)


def has_spatial_map(model: keras.Model) -> bool:
    """True when Grad-CAM finds a 4-D feature map to explain in `model`."""
    try:
        _find_feature_layer(model, None)
    except ValueError:
        return False
    return True


def _flags(path: Any, regions: Sequence[str | None] | None, i: int) -> str:
    """A fake's replaced-region flags: given, else from its file name ('' when unknown)."""
    given = regions[i] if regions is not None else None
    if isinstance(given, str) and given:
        return given
    return parse_path_label(str(path)).regions or ""


def _roc_curves(
    y: np.ndarray, s: np.ndarray, keys: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All images, then each fake level against all reals."""
    curves = {"all": (y, s)}
    for level in (*FAKE_LEVELS, "unknown"):
        if (keys == level).any():
            mask = (keys == level) | (y == 0)
            curves[f"{level} vs real"] = (y[mask], s[mask])
    return curves
