"""The README's Python API as a Jupyter notebook, executed headless by nbconvert in a real kernel:
no cell fails, fit shows its progress bar, and a figure as a cell's last value shows as a PNG."""
import base64
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
ExecutePreprocessor = pytest.importorskip("nbconvert.preprocessors").ExecutePreprocessor
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def readme_api_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split("## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_readme_s_api_runs_in_a_notebook_with_progress_and_an_inline_figure(tmp_path, monkeypatch):
    (api,) = readme_api_blocks()
    assert "epochs=8" in api
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(api.replace("epochs=8", "epochs=2")),  # the README's run, shorter
        nbformat.v4.new_code_cell("cnnfruit.plots.history_figure(result.history)"),  # no %matplotlib
    ]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(notebook, {"metadata": {"path": str(tmp_path)}})

    for cell in notebook.cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    api_cell, figure_cell = notebook.cells
    printed = "".join(o.text for o in api_cell.outputs if o.output_type == "stream")
    assert printed.count("Epoch: ") == 2 and "runs/api/best.npz" in printed and "['Pear']" in printed
    bars = [o for o in api_cell.outputs if o.output_type == "display_data" and "text/html" in o.data]
    assert len(bars) == 1 and "<progress" in bars[0].data["text/html"]
    assert bars[0].data["text/plain"].startswith("epoch 2/2 in ")  # updated in place to the end of the run
    (result,) = [o for o in figure_cell.outputs if o.output_type == "execute_result"]
    assert base64.b64decode(result.data["image/png"])[:8] == PNG_MAGIC
