"""Where the face parts lie in MediaPipe's canonical 468-point face mesh (no keras here:
the part features and the pictures read these without loading a model)."""

from __future__ import annotations

# The image's left eye first (the eye on the left of the picture).
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)
NOSE = (1, 2, 4, 5, 195, 197, 98, 327, 129, 358)
MOUTH = (0, 13, 14, 17, 61, 291, 78, 308, 37, 267, 84, 314)
SKIN = {
    "left_cheek": (50, 101, 118, 205),
    "right_cheek": (280, 330, 347, 425),
    "forehead": (9, 151, 108, 337),
    "chin": (152, 175, 199, 200),
}
PARTS = {"left_eye": LEFT_EYE, "right_eye": RIGHT_EYE, "nose": NOSE, "mouth": MOUTH}
