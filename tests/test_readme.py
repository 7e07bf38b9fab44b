"""Every example in the README and docs/*.md is run by the tests, in a fresh folder and twice:

- Python blocks run as scripts, each file's blocks in order (a later block may use what an earlier
  one saved), then all of them again (an example must survive its own rerun). Runs are made short
  (epochs=1, trials=2); a block that reads sys.argv is a script whose run needs its arguments:
  the ONNX script's has a test of its own below.
- Command lines (```bash blocks, and `$ cnnfruit ...` lines in transcripts) are parsed by the real
  command line: every command, flag and value must be one that the command takes. They are not run
  here (minutes of training, a Dask cluster, the raw photos); tests/test_cli*.py run the commands.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", flags=re.S | re.M)


def python_blocks(section):
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def blocks(document, languages):
    return [code for language, code in FENCE.findall(document.read_text(encoding="utf-8")) if language in languages]


def shorter(code):
    return re.sub(r"\btrials=\d+", "trials=2", re.sub(r"\bepochs=\d+", "epochs=1", code))


def run_python(code, folder, name):
    script = folder / f"{name}.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1"})


def documents_with(languages):
    return [pytest.param(d, id=str(d.relative_to(ROOT))) for d in DOCUMENTS if blocks(d, languages)]


@pytest.mark.parametrize("document", documents_with({"python"}))
def test_the_python_examples_run_and_run_again(document, tmp_path):
    examples = [code for code in blocks(document, {"python"}) if "sys.argv" not in code]
    for round in (1, 2):
        for number, code in enumerate(examples):
            result = run_python(shorter(code), tmp_path, f"block{number}")
            assert result.returncode == 0, f"{document.name} block {number}, run {round}:\n{code}\n{result.stderr[-3000:]}"


def test_the_python_api_section_runs(tmp_path):
    blocks = python_blocks("Python API")
    assert len(blocks) >= 2
    for number, block in enumerate(blocks):
        result = run_python(shorter(block), tmp_path, f"block{number}")
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "api" / "best.npz").is_file()
    assert result.stdout.splitlines()[0] == "['Pear']"


def command_lines(document):
    """Each cnnfruit command line of a document's shell blocks and transcripts, as its words, with
    the output a transcript shows after it."""
    found = []
    for language, code in FENCE.findall(document.read_text(encoding="utf-8")):
        if language not in ("bash", "sh", "shell", "console", ""):
            continue
        code = code.replace("\\\n", " ")  # continued lines
        lines = [(line, "") for line in code.splitlines()]
        if language == "":  # a transcript: its "$ " lines are commands, the lines until the next one their output
            shown = re.split(r"^\$ ", code, flags=re.M)[1:]
            lines = [tuple(part.split("\n", 1)) if "\n" in part else (part, "") for part in shown]
        for line, output in lines:
            line = re.sub(r"<[^<>]*>", "...", line)  # "<5 photos of unseen fruits>": words left out, as "..."
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
            command = []
            for word in [*words, ";"]:
                if word in (";", "&", "&&", "|", "||"):
                    while command and re.fullmatch(r"[A-Z_]+=.*", command[0]):  # VAR=value before the program
                        command.pop(0)
                    if command and command[0] == "cnnfruit":
                        found.append((command[1:], output))
                    command = []
                elif word in (">", ">>", "<", "2>", "2>&1") or (command and command[-1] in (">", ">>", "<")):
                    continue
                else:
                    command.append(word)
    return found


@pytest.mark.parametrize("document", [pytest.param(d, id=str(d.relative_to(ROOT))) for d in DOCUMENTS
                                      if command_lines(d)])
def test_every_command_line_shown_is_one_the_cli_takes(document, monkeypatch):
    """Commands, flags and their values (choices, numbers, layouts) as the parser checks them; the
    files they name are the writer's, so only whether a path is wanted is checked, not the file."""
    from cnnfruit.cli import main

    monkeypatch.setattr(click.Path, "convert", lambda self, value, param, ctx: value)
    for words, output in command_lines(document):
        elided = "..." in words  # "cnnfruit train ... --seed 0": words the text left out
        words = [w for w in words if w != "..."]
        if not words or words[0] in ("--version", "-h", "--help"):
            continue
        command = main.get_command(click.Context(main), words[0])
        assert command is not None, f"{document.name}: no command {words[0]!r} in: cnnfruit {' '.join(words)}"
        try:
            command.make_context(words[0], words[1:])
        except click.exceptions.Exit:  # -h
            pass
        except click.MissingParameter:
            assert elided, f"{document.name}: cnnfruit {' '.join(words)} lacks an argument"
        except click.UsageError as err:  # fine where the transcript shows this very refusal
            message = err.format_message()
            assert f"Error: {message}" in output, f"{document.name}: cnnfruit {' '.join(words)}: {message}"


def test_command_lines_are_found_in_blocks_and_transcripts():
    lines = [words for words, _ in command_lines(README)]
    assert ["train", "--lr", "1e-6", "--epochs", "10"] in lines  # the install block, after &&
    assert ["eval", "runs/20261130-001455/model.npz"] in lines  # a transcript's $ line
    assert ["sweep", "--lr", "1e-4,1e-3", "--kernels", "4,8", "--scheduler", "tcp://127.0.0.1:8786", "--out",
            "sweeps/a"] in lines  # after NUMBA_NUM_THREADS=1 dask worker ... &


def test_the_onnx_section_s_script_classifies_photos_as_cnnfruit_does(tmp_path):
    """The README's script for an exported model, run on photo files, prints cnnfruit's classes."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    import cnnfruit
    from cnnfruit.nn.architecture import init_parameters

    (script,) = python_blocks("Export to ONNX")
    assert all(code == script for document in DOCUMENTS for code in blocks(document, {"python"})
               if "sys.argv" in code)  # the scripts the other test leaves to this one
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


def test_every_cnnfruit_name_the_docs_write_is_reachable_as_written():
    """`cnnfruit.plots.history_figure`, `cnnfruit.explain(...)`: after `import cnnfruit`, each name the
    README and docs write resolves, attribute by attribute (a name in a subpackage once imported)."""
    import importlib

    code = re.compile(r"`([^`]*)`")
    names = set()
    for document in DOCUMENTS:
        for span in code.findall(document.read_text(encoding="utf-8")):
            names.update(re.findall(r"(?<![\w./-])cnnfruit(?:\.[A-Za-z_]\w*)+", span))
    assert "cnnfruit.plots" in names and "cnnfruit.explain" in names
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest prefix that is a module, then attributes
            try:
                value = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for part in parts[cut:]:
            assert hasattr(value, part), f"{name}: {'.'.join(parts[:cut])} has no {part}"
            value = getattr(value, part)
