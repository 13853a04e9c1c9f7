"""Notebooks are kept in git without outputs: nothing executed, nothing to diff but the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ("01_eda", "02_model_comparison", "03_explain", "04_nightly")
# `nbconvert --to notebook --execute X.ipynb` writes X.nbconvert.ipynb: a result, not a source.
SOURCES = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.endswith(".nbconvert.ipynb"))


def test_the_notebooks_exist() -> None:
    assert {p.stem for p in SOURCES} >= set(EXPECTED)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", "kernel must be python3"
    dirty = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            dirty.append(f"cell {i}: outputs")
        if cell.get("execution_count") is not None:
            dirty.append(f"cell {i}: execution_count {cell['execution_count']}")
        if "execution" in cell.get("metadata", {}):
            dirty.append(f"cell {i}: execution timing metadata")
    assert not dirty, f"{path.name} is not stripped ({'; '.join(dirty)}): clear its outputs"
