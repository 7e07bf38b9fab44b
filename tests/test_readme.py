"""The README's Python code runs as written, in a fresh folder."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section):
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_python_api_section_runs(tmp_path):
    blocks = python_blocks("Python API")
    assert len(blocks) >= 2
    for number, block in enumerate(blocks):
        script = tmp_path / f"block{number}.py"
        script.write_text(block)
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=600, env={**os.environ, "PYTHONPATH": str(README.parent)})
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "api" / "best.npz").is_file()
    assert result.stdout.splitlines()[0] == "['Pear']"


def test_the_onnx_section_s_script_classifies_photos_as_cnnfruit_does(tmp_path):
    """The README's script for an exported model, run on photo files, prints cnnfruit's classes."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    import cnnfruit
    from cnnfruit.nn.architecture import init_parameters

    (script,) = python_blocks("Export to ONNX")
    (tmp_path / "classify.py").write_text(script)
    arch = cnnfruit.Architecture(kernels=2, hidden=(16,), in_channels=3, classes=3)
    params = init_parameters(arch, np.random.default_rng(3), scheme="torch")
    clf = cnnfruit.Classifier(arch, params, ["Carambula", "Lychee", "Pear"], color="rgb", normalize="standardize")
    clf.export(str(tmp_path / "fruit.onnx"))
    photos = cnnfruit.load_embedded().test.images[::100]
    paths = []
    for number, pixels in enumerate(photos):
        paths.append(str(tmp_path / f"photo{number}.png"))
        Image.fromarray(pixels).resize((100, 100), Image.Resampling.NEAREST).save(paths[-1])
    result = subprocess.run([sys.executable, "classify.py", "fruit.onnx", *paths], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    printed = [line.split()[1] for line in result.stdout.splitlines()]
    assert printed == clf.predict(paths)
