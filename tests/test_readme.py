"""The documentation's examples run as written.

Every ```python block of the README and of docs/ is a script: a page's blocks run in order, each in
a fresh process, in one fresh folder per page (so a later block may use what an earlier one wrote).
A block that reads command-line arguments is run by a test of its own, with arguments. Terminal
sessions (plain ``` blocks) record real runs and are not executed; the README's set-up commands are
checked against what CI runs.
"""
import ast
import os
import re
import subprocess
import sys
from importlib.machinery import PathFinder
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# Names whose use in a block needs an optional extra that an import line does not show.
EXTRA_MODULES = {
    "TensorBoardLog": ["tensorboardX"],
    "local_cluster": ["optuna", "optuna_integration", "distributed"],
    "Sweep(": ["optuna", "optuna_integration"],
}


def python_blocks(page):
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def takes_arguments(block):
    return "sys.argv" in block


def needed_modules(block):
    """The top-level modules a block imports, and those its cnnfruit names need."""
    modules = set()
    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    for name, extra in EXTRA_MODULES.items():
        if name in block:
            modules.update(extra)
    return sorted(modules)


def run_script(block, folder, name, args=()):
    script = folder / name
    script.write_text(block, encoding="utf-8")
    return subprocess.run([sys.executable, script.name, *args], cwd=folder, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


RUNNABLE = [page for page in PAGES if any(not takes_arguments(block) for block in python_blocks(page))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[page.name for page in RUNNABLE])
def test_the_python_examples_of_a_page_run_as_written(page, tmp_path):
    blocks = [block for block in python_blocks(page) if not takes_arguments(block)]
    for block in blocks:
        for module in needed_modules(block):
            # PathFinder looks at sys.path alone: the blocks run in fresh processes, whatever
            # this one has in sys.modules (a test may leave a stand-in module there)
            if module not in ("cnnfruit", *sys.builtin_module_names) and PathFinder.find_spec(module) is None:
                pytest.skip(f"{page.name} needs {module}")
    for number, block in enumerate(blocks):
        result = run_script(block, tmp_path, f"block{number}.py")
        assert result.returncode == 0, f"{page.name}, block {number}:\n{result.stderr}"
    if page == README:
        assert (tmp_path / "runs" / "api" / "best.npz").is_file()
        assert "['Pear']" in result.stdout.splitlines()


def test_every_python_example_is_run_by_a_test():
    """A block either runs as a script of its page, or reads arguments and has a test of its own below."""
    with_arguments = [(page.name, block) for page in PAGES for block in python_blocks(page) if takes_arguments(block)]
    assert [name for name, _ in with_arguments] == ["onnx.md"]
    assert any(python_blocks(README)), "the README shows the Python API"


def test_the_onnx_page_s_script_classifies_photos_as_cnnfruit_does(tmp_path):
    """The script for an exported model, run on photo files with only onnxruntime, numpy and Pillow,
    prints cnnfruit's classes."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    import cnnfruit
    from cnnfruit.nn.architecture import init_parameters

    (script,) = [block for block in python_blocks(ROOT / "docs" / "onnx.md") if takes_arguments(block)]
    arch = cnnfruit.Architecture(kernels=2, hidden=(16,), in_channels=3, classes=3)
    params = init_parameters(arch, np.random.default_rng(3), scheme="torch")
    clf = cnnfruit.Classifier(arch, params, ["Carambula", "Lychee", "Pear"], color="rgb", normalize="standardize")
    clf.export(str(tmp_path / "fruit.onnx"))
    photos = cnnfruit.load_embedded().test.images[::100]
    paths = []
    for number, pixels in enumerate(photos):
        paths.append(str(tmp_path / f"photo{number}.png"))
        Image.fromarray(pixels).resize((100, 100), Image.Resampling.NEAREST).save(paths[-1])
    result = run_script(script, tmp_path, "classify.py", ["fruit.onnx", *paths])
    assert result.returncode == 0, result.stderr
    printed = [line.split()[1] for line in result.stdout.splitlines()]
    assert printed == clf.predict(paths)


def setup_commands(page):
    """The commands of a page's first ```bash block, comments dropped."""
    block = re.search(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_s_test_command():
    install_and_run, install_and_test = setup_commands(README)
    install, test = [part.strip() for part in install_and_test.split("&&")]
    target = install.split()[-1]  # ".[test,...]", the project with its extras
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(rf"-m pip install (--quiet )?{re.escape(target)}$", ci, flags=re.M)
    assert re.search(rf"^{re.escape(test)}$", ci, flags=re.M)
    assert install_and_run.startswith("pip install . && cnnfruit train")


def test_the_site_s_home_page_shows_the_readme_s_set_up_commands():
    assert setup_commands(ROOT / "docs" / "index.md") == setup_commands(README)


def test_the_readme_s_links_into_the_repository_resolve():
    """The README is not part of the site's strict build, so its own links are checked here."""
    text = README.read_text(encoding="utf-8")
    targets = [link for link in re.findall(r"\]\(([^)\s]+)\)", text) if not link.startswith(("http://", "https://"))]
    assert targets
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            assert anchor in {heading_id(line) for line in (ROOT / path).read_text(encoding="utf-8").splitlines()
                              if line.startswith("#")}, target


def heading_id(line):
    """The anchor MkDocs gives a Markdown heading line (its toc extension's slugify)."""
    title = line.lstrip("#").strip().lower()
    title = re.sub(r"[^\w\s-]", "", title)
    return re.sub(r"[-\s]+", "-", title).strip("-")
