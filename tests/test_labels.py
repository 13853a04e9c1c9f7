"""Labels, levels and region flags from the data set's layout."""

import pytest

from fakeface.labels import PathLabel, parse_path_label


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("file:/d/training_real/real_00001.jpg", PathLabel(0, None, None)),
        ("file:/d/training_fake/mid_37_1010.jpg", PathLabel(1, "mid", "1010")),
        ("/d/fake/HARD_3_0001.JPG", PathLabel(1, "hard", "0001")),
        ("/d/real/x.png", PathLabel(0, None, None)),
        ("/d/training_fake/odd_name.jpg", PathLabel(1, None, None)),
        ("/d/drop/mid_37_1010.jpg", PathLabel(None, None, None)),
        ("file:/d/training_fake/sub%20dir/easy_1_1111.jpg", PathLabel(1, "easy", "1111")),
        ("x.jpg", PathLabel(None, None, None)),
    ],
)
def test_parse_path_label(path: str, expected: PathLabel) -> None:
    assert parse_path_label(path) == expected


def test_nearest_labelled_folder_wins() -> None:
    assert parse_path_label("/fake/training_real/real_1.jpg").label == 0
