"""The README's Python API section runs as written, in a fresh folder."""
import os
import re
import subprocess
import sys
from pathlib import Path

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
