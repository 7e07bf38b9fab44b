"""fit's progress: a bar where someone watches (notebook, terminal), nothing in a pipe, Keras's verbose."""
import os
import re
import subprocess
import sys

import pytest

import cnnfruit
from cnnfruit import progress

from helpers import TINY_SETTINGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(**overrides):
    return cnnfruit.TrainConfig(**{**TINY_SETTINGS, "epochs": 2, "batch_size": 4, "lr": 1e-3, **overrides})


@pytest.mark.parametrize("verbose, kind", [
    (0, progress.NoProgress), (False, progress.NoProgress), (2, progress.EpochLines),
    ("auto", progress.EpochProgress), (1, progress.EpochProgress), (True, progress.EpochProgress),
])
def test_verbose_takes_keras_s_values(verbose, kind, monkeypatch):
    monkeypatch.setattr(progress, "_stderr_is_terminal", lambda: True)
    display = progress.progress_display(verbose, 3)
    assert type(display) is kind
    assert not getattr(display, "quiet", False)
    monkeypatch.setattr(progress, "_stderr_is_terminal", lambda: False)
    assert getattr(progress.progress_display(verbose, 3), "quiet", True)  # a pipe: no bar


@pytest.mark.parametrize("verbose", [3, -1, "yes", 1.0, None])
def test_other_verbose_values_are_refused_by_name(verbose):
    with pytest.raises(cnnfruit.CnnfruitError, match='verbose must be "auto", 0, 1 or 2'):
        progress.progress_display(verbose, 3)


def test_fit_in_a_pipe_prints_nothing_and_verbose_2_prints_the_epoch_lines(synthetic_dataset, capfd):
    """Under pytest stdout and stderr are files, as in a pipe or a log: the default shows nothing."""
    cnnfruit.fit(synthetic_dataset, tiny())
    assert capfd.readouterr() == ("", "")
    result = cnnfruit.fit(synthetic_dataset, tiny(), verbose=2)
    out, err = capfd.readouterr()
    assert out.splitlines() == [str(record) for record in result.history.epochs] and err == ""
    cnnfruit.fit(synthetic_dataset, tiny(), verbose=0, on_epoch=print)
    assert len(capfd.readouterr().out.splitlines()) == 2


def test_fit_in_a_terminal_draws_a_bar_on_stderr_with_printed_lines_above_it(tmp_path):
    """In a pseudo-terminal: rich's bar ("epoch 1 ... 6/6"), and on_epoch=print lines each on a line of their own above it."""
    script = tmp_path / "fit.py"
    script.write_text(
        "import cnnfruit\n"
        "from helpers import TINY_SETTINGS\n"
        "data = cnnfruit.read_image_folder(%r)\n"
        "config = cnnfruit.TrainConfig(**TINY_SETTINGS, epochs=2, batch_size=2, lr=1e-3)\n"
        "cnnfruit.fit(data, config, on_epoch=print)\n"
        "print('done')\n" % str(_folder(tmp_path)))
    import pty

    captured = bytearray()

    def read(fd):
        data = os.read(fd, 1024)
        captured.extend(data)
        return data

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), "COLUMNS": "250"}
    old = dict(os.environ)
    os.environ.update(env)
    try:
        status = pty.spawn([sys.executable, str(script)], read)
    finally:
        os.environ.clear()
        os.environ.update(old)
    text = captured.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "epoch 1" in text and "━" in text  # the bar was drawn
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # the bar's cursor moves and colours
    lines = plain.replace("\r", "\n").splitlines()
    assert sum(line.startswith("Epoch: ") and line.rstrip().endswith(" s") for line in lines) == 2
    assert "done" in lines


def _folder(tmp_path):
    from helpers import write_image_folder

    return write_image_folder(tmp_path / "photos", train=6, test=2)


def test_the_notebook_bar_is_one_display_updated_in_place(monkeypatch, synthetic_dataset):
    """Inside a Jupyter kernel fit shows an HTML <progress> bar through one display handle, and
    leaves it at the last epoch."""
    display_module = pytest.importorskip("IPython.display")
    shown = []

    class Handle:
        def update(self, bundle, raw):
            shown.append(bundle)

    def display(bundle, raw, display_id):
        assert raw and display_id
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(display_module, "display", display)
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    cnnfruit.fit(synthetic_dataset, tiny(epochs=3))
    assert all("<progress" in b["text/html"] for b in shown)
    assert any(b["text/plain"].startswith("epoch 2/3: step ") for b in shown)
    assert shown[-1]["text/plain"].startswith("epoch 3/3 in ")
    assert '<progress value="3" max="3"' in shown[-1]["text/html"]


def test_in_notebook_is_false_outside_a_kernel():
    assert not progress.in_notebook()
    code = "import sys, cnnfruit.progress as p; print(p.in_notebook(), 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
