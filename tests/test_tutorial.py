"""docs/tutorial.ipynb runs in a real Jupyter kernel (nbclient) and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_tutorial_is_committed_without_outputs() -> None:
    cells = code_cells(nbformat.read(NOTEBOOK, as_version=4))
    assert cells and all(cell.outputs == [] and cell.execution_count is None for cell in cells)


def test_tutorial_runs(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails (or runs over 120 s)

    outputs = [output for cell in code_cells(notebook) for output in cell.outputs]
    text = "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs
    )
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert "epoch 1/10  train_loss" in text and "confusion matrix" in text and "temperature" in text
    assert "synthetic data: True" in text and "new-film.png:" in text
    assert "\x1b" not in text
    stderr = [line for o in outputs if o.get("name") == "stderr" for line in o["text"].splitlines()]
    assert all(line.startswith("decoding ") for line in stderr), stderr  # no library warnings or tips
    assert len(figures) >= 6  # classes, samples, curves, confusion matrix, reliability, heat maps
    work = tmp_path / "pneumoscan-tutorial"
    assert (work / "report.html").is_file() and (work / "tutorial-model.safetensors").is_file()
