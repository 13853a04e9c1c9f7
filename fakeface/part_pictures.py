"""Why a photo was flagged: each face part outlined, in red only above its own threshold.

The part model has no spatial map for Grad-CAM to weigh; its explanation is its part scores.
`plot_part_verdicts` draws, for each image, the four parts where the face mesh places them,
labelled with their P(pasted); a part is marked (red, thick) only when its score reaches its
own calibrated threshold (`threshold_<part>`), grey otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fakeface.evaluate import _as_rgb, _figure, _message, _save
from fakeface.outputs import PART_NAMES


def flagged_parts(part_scores: np.ndarray, thresholds: Mapping[str, float]) -> list[list[str]]:
    """Per image, the parts whose score is at or above their own threshold (PART_NAMES order)."""
    scores = np.asarray(part_scores, np.float64).reshape(-1, len(PART_NAMES))
    return [
        [
            name
            for k, name in enumerate(PART_NAMES)
            if name in thresholds and np.isfinite(row[k]) and row[k] >= thresholds[name]
        ]
        for row in scores
    ]


def plot_part_verdicts(
    images: np.ndarray,
    part_scores: np.ndarray,
    thresholds: Mapping[str, float],
    titles: Sequence[str],
    path: str | Path,
) -> Path:
    """A grid of images, each with its parts outlined; marked parts above their threshold."""
    from matplotlib.patches import Ellipse

    from fakeface.models.part_features import PART_POINTS
    from fakeface.models.part_model import mesh_of

    images = np.asarray(images)
    n = len(images)
    cols = min(3, max(n, 1))
    rows = max(1, -(-n // cols))
    fig = _figure(4.0 * cols, 4.3 * rows)
    if n == 0:
        _message(fig.add_subplot(1, 1, 1), "no images")
        return _save(fig, path)
    marked = flagged_parts(part_scores, thresholds)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_as_rgb(images[i]))
        mesh = mesh_of(np.asarray(images[i], np.uint8))
        if mesh is None:
            ax.text(5, 15, "no face found", color="yellow", fontsize=9)
        else:
            for k, name in enumerate(PART_NAMES):
                pts = mesh[list(PART_POINTS[name])]
                centre = pts.mean(axis=0)
                w, h = pts.max(axis=0) - pts.min(axis=0) + 4
                hot = name in marked[i]
                ax.add_patch(
                    Ellipse(
                        centre,
                        w * 1.3,
                        h * 1.3,
                        fill=False,
                        color="red" if hot else "0.7",
                        linewidth=2.5 if hot else 1.0,
                    )
                )
                ax.text(
                    centre[0],
                    centre[1] - h * 0.75,
                    f"{part_scores[i][k]:.2f}",
                    color="red" if hot else "white",
                    fontsize=8,
                    ha="center",
                )
        ax.set_title(titles[i] if i < len(titles) else "", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)
