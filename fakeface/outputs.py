"""What a model's output columns mean: the image's P(fake) and, for part models, each part's.

A model of the factory outputs either one column (N, 1), P(fake), or `MODEL_OUTPUTS` (N, 6):
P(fake), then each face part's own calibrated P(pasted) in the data set's flag order, then
1.0 where a face was found and 0.0 where none was (the part scores are then meaningless and
become null in the scores table; P(fake) still holds).
"""

from __future__ import annotations

# The data set's flag order in a fake's file name (`mid_37_1010.jpg`: left eye, right eye,
# nose, mouth). "left" is the image's left, as in fakeface.synth and fakeface.models.parts.
PART_NAMES = ("left_eye", "right_eye", "nose", "mouth")
PART_COLUMNS = tuple(f"p_{name}" for name in PART_NAMES)
FACE_FOUND = "face_found"
MODEL_OUTPUTS = ("p_fake", *PART_COLUMNS, FACE_FOUND)


def part_threshold_tag(part: str) -> str:
    """The registry tag holding part `part`'s threshold (`threshold_left_eye`, ...)."""
    if part not in PART_NAMES:
        raise ValueError(f"unknown part {part!r}; parts are {', '.join(PART_NAMES)}")
    return f"threshold_{part}"


def part_thresholds_from_tags(tags: dict[str, str]) -> dict[str, float]:
    """part -> threshold from a version's `threshold_<part>` tags; {} for a one-output model.

    Raises ValueError naming the tag whose value is not a number.
    """
    found = {}
    for part in PART_NAMES:
        tag = part_threshold_tag(part)
        if tag in tags:
            try:
                found[part] = float(tags[tag])
            except ValueError:
                raise ValueError(f"non-numeric tag {tag!r} ({tags[tag]!r})") from None
    return found


def checked_part_thresholds(thresholds: dict[str, float] | None) -> dict[str, float]:
    """`thresholds` as {part: float} in PART_NAMES order; ValueError for an unknown part."""
    if not thresholds:
        return {}
    unknown = sorted(set(thresholds) - set(PART_NAMES))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; parts are {', '.join(PART_NAMES)}")
    return {part: float(thresholds[part]) for part in PART_NAMES if part in thresholds}
