"""notebooks/quickstart.ipynb runs from top to bottom (a short training run, in a temp copy).

The committed notebook keeps the outputs of a full run (minutes of training); here the
training time is cut to seconds through UTILEGEN_QUICKSTART_SECONDS, which is enough to
check that every step works with the current API, not how good the small model gets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_committed_notebook_has_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("outputs") for c in code), "commit the notebook with its outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    images = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # pair, synthetic examples, loss, overlays, PSD


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("UTILEGEN_QUICKSTART_SECONDS", "8")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The notebook finds EMPS relative to notebooks/; point it at the same copy from here.
    emps = Path(__file__).resolve().parents[2] / "shared" / "data" / "emps"
    monkeypatch.setenv("UTILEGEN_EMPS", str(emps))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "Report(2 images" in text
    assert "weights kept" in text  # the one-call adaptation ran and reported
    assert os.listdir(tmp_path) == []  # the notebook writes its report to a temp folder
