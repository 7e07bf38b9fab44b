"""A sweep talks plainly: a rerun, a resume and Ctrl-C print one-line messages and no traceback
(neither the scheduler's DuplicatedStudyError nor the workers' KeyboardInterrupt), and flags that
cannot apply are refused with the reason."""
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import cli

pytest.importorskip("optuna", reason="the sweep extra is not installed")
pytest.importorskip("distributed", reason="the sweep extra is not installed")
pytest.importorskip("optuna_integration", reason="the sweep extra is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--kernels", "2", "--kernel-size", "5", "--hidden", "6", "--normalize", "scale", "-q"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from helpers import write_image_folder

    return str(write_image_folder(tmp_path_factory.mktemp("talkdata"), train=6, test=2))


def sweep(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "cnnfruit", "sweep", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT}, **kwargs)


def test_ctrl_c_then_resume_then_rerun_on_a_local_cluster_print_no_traceback(tmp_path, data):
    out = tmp_path / "s"
    first = sweep("--data", data, "--lr", "1e-3,1e-2", *TINY, "--epochs", 30, "--seeds", 2, "--workers", 2,
                  "--out", out, start_new_session=True)  # its own process group, as a terminal's Ctrl-C reaches
    deadline = time.monotonic() + 120
    while not (out / "runs" / "trial-0000" / "history.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGINT)  # the sweep and its Dask workers, as Ctrl-C in a terminal
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert stdout.splitlines()[-1] == f"Interrupted: go on with: cnnfruit sweep --resume {out}"
    assert stderr == ""  # no KeyboardInterrupt from the workers, no refused report on the scheduler

    resumed = sweep("--resume", out, "--workers", 2, "--seeds", 2)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 1
    assert stderr.strip() == ("Error: --resume goes on with the sweep as it was started (its settings, seeds, "
                              "trials, data, pruner and folder): leave out --seeds")
    # The resume on a cluster (the study on the scheduler, which must not log a DuplicatedStudyError),
    # then the same command again, in this process.
    for args in (["--resume", out, "-q", "--workers", 2],
                 ["--data", data, "--lr", "1e-3,1e-2", *TINY, "--epochs", 30, "--seeds", 2, "--out", out, "--workers", 0]):
        again = sweep(*args)
        stdout, stderr = again.communicate(timeout=300)
        assert again.returncode == 0, stderr
        assert stdout.splitlines()[1] == (f"Going on with the sweep in {out}: the runs it has made are kept, the "
                                          "missing ones are made")
        assert stderr == ""  # the scheduler loads the study: no DuplicatedStudyError logged


def test_class_weights_are_searched_by_repeating_the_flag_and_one_value_is_not_a_search(tmp_path, data):
    from cnnfruit.sweep.space import Choice, SearchSpace

    assert SearchSpace.from_text({"class_weights": ["none", "1,2,1"]}).searched == {
        "class_weights": Choice(("none", "1.0,2.0,1.0"))}
    assert "Repeat to search several, one per flag (--class-weights none --class-weights 1,2,1)" in " ".join(
        cli("sweep", "-h").output.split())
    result = cli("sweep", "--class-weights", "1,2,1", "--workers", 0)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].endswith("; these are one value each: --class-weights 1.0,2.0,1.0")
    result = cli("sweep", "--data", data, "--class-weights", "none", "--class-weights", "1,2,1", *TINY,
                 "--epochs", 1, "--seeds", 1, "--workers", 0, "--out", tmp_path / "w")
    assert result.exit_code == 0, result.output
    assert "Sweep of class_weights (none, 1.0,2.0,1.0): 2 setting(s)" in result.output
