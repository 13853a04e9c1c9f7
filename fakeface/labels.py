"""Labels from the data set's layout: `training_real/`, `training_fake/<level>_<n>_<flags>.jpg`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

REAL_DIRS = frozenset({"training_real", "real"})
FAKE_DIRS = frozenset({"training_fake", "fake"})
LEVELS = ("easy", "mid", "hard")
REGIONS = ("left_eye", "right_eye", "nose", "mouth")

_FAKE_NAME = re.compile(r"^(easy|mid|hard)_(\d+)_([01]{4})\.[A-Za-z]+$", re.IGNORECASE)


@dataclass(frozen=True)
class PathLabel:
    """What a file's location says about it; all None when it says nothing."""

    label: int | None
    level: str | None
    regions: str | None


UNLABELED = PathLabel(None, None, None)


def parse_path_label(path: str) -> PathLabel:
    """Label (1 fake, 0 real), level and region flags from a path or URI."""
    parts = [p for p in unquote(path).replace("\\", "/").split("/") if p]
    if len(parts) < 2:
        return UNLABELED
    name, parents = parts[-1], [p.lower() for p in parts[:-1]]
    # The nearest labelled folder wins, so a corpus nested under `fake/` stays consistent.
    for folder in reversed(parents):
        if folder in REAL_DIRS:
            return PathLabel(0, None, None)
        if folder in FAKE_DIRS:
            match = _FAKE_NAME.match(name)
            if match:
                return PathLabel(1, match.group(1).lower(), match.group(3))
            return PathLabel(1, None, None)
    return UNLABELED
