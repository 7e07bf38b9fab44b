"""A training stopped while its images decode: SIGTERM says what it did, as during training, and
no decoding worker outlives the command, even one killed outright (their pipes would keep a
caller waiting for ever)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import class_folders

ROOT = Path(__file__).resolve().parents[1]
# The command line, with each chunk of files decoding slowly enough to be caught at it.
SLOW_TRAIN = """
import sys, time
from cnnfruit.data import cache
decode = cache.decode_files
def slowly(*args):
    time.sleep(0.5)
    return decode(*args)
cache.decode_files = slowly
from cnnfruit.cli import main
sys.argv[0] = "cnnfruit"
main()
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")


def children(pid):
    """The pids whose parent is pid."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_loading(tmp_path):
    """A train command decoding 600 photos on 2 workers; returns (process, its workers' pids)."""
    data = class_folders(tmp_path / "data", per_class=200)
    command = [sys.executable, "-c", SLOW_TRAIN, "train", "--data", str(data), "--no-cache", "--kernels", "2",
               "--hidden", "6", "--epochs", "1", "-q", "--out", str(tmp_path / "run")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    for _ in range(600):
        workers = children(process.pid)
        if len(workers) >= 2:  # forked: decoding is under way
            return process, workers
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"no decoding workers appeared: {process.communicate()}")


def gone(pids, within=60):
    for _ in range(within * 10):
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_sigterm_while_loading_says_so_exits_130_and_stops_the_workers(tmp_path):
    process, workers = start_loading(tmp_path)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert err.splitlines()[-1] == "Interrupted by SIGTERM before training started; nothing was saved", err
    assert "Traceback" not in err
    assert gone(workers)
    assert not (tmp_path / "run" / "model.npz").exists()


def test_workers_die_with_a_parent_killed_outright_and_free_its_pipes(tmp_path):
    process, workers = start_loading(tmp_path)
    process.kill()  # SIGKILL: the parent can do nothing
    process.communicate(timeout=120)  # returns only once no worker holds the pipes
    assert gone(workers)
