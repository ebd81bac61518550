"""The notebooks run top to bottom on small inputs (a broken notebook fails CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, pretrained_path, shared_dir, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(pretrained_path.parent))
    monkeypatch.setenv("SOUNDNET_KERAS_OFFLINE", "1")  # the weights are in that cache already
    monkeypatch.setenv("SOUNDNET_NOTEBOOK_SMALL", "1")  # small inputs and few steps
    monkeypatch.setenv("SOUNDNET_ESC_ROOT", str(shared_dir / "esc10-dev"))
    monkeypatch.setenv("SOUNDNET_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
