"""The notebooks in notebooks/ run top to bottom, and are kept in git without outputs."""

from __future__ import annotations

from pathlib import Path
import re

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    if path.stem == "pytorch":
        pytest.importorskip("torch", reason="pytorch.ipynb needs PyTorch (CI installs its CPU build)")
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} is stored with outputs; clear them before committing "
                "(jupyter nbconvert --clear-output --inplace)"
            )
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors


def test_every_notebook_the_readme_lists_is_run_here() -> None:
    """The README's Notebooks section lists what a reader will find: each one is run above
    (an empty glob would run none, and say nothing)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(\w+)\.ipynb`", section))
    assert listed and listed == {p.stem for p in NOTEBOOKS}
