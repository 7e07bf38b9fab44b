"""What a person sees in a terminal: run on a pseudo-terminal, every epoch line starts a line of its own.

An epoch line written around the progress bar rather than through its console is glued, in tmux,
to the bar left on screen:
`epoch 1 ━━━━╸ 1025/1030 0:00:01Epoch: 1 | Training Loss: ...`.
"""
import os
import pty
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_a_terminal(args, timeout=300):
    """Run args with stdout and stderr on one pseudo-terminal (as in a shell); everything it wrote."""
    main, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child's side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return process.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


def test_every_epoch_line_starts_a_line_of_its_own(tmp_path, make_image_folder):
    # Epochs long enough (a few hundred steps) for the bar to be drawn before each epoch line.
    data = make_image_folder(tmp_path / "data", train=150, test=2)
    code, raw = run_on_a_terminal([sys.executable, "-m", "cnnfruit", "train", "--data", str(data), "--kernels", "4",
                                   "--hidden", "32", "--epochs", "3", "--out", str(tmp_path / "run")])
    assert code == 0, raw
    shown = ANSI.sub("", raw)
    assert "━" in shown, "the progress bar was never drawn, so this test cannot tell glued lines apart"
    starts = [m.start() for m in re.finditer("Epoch: ", shown)]
    assert len(starts) == 3, shown
    for start in starts:
        assert start == 0 or shown[start - 1] in "\r\n", repr(shown[max(0, start - 80):start + 20])
    assert re.search(r"(^|[\r\n])Test Accuracy: ", shown), shown
