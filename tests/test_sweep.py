"""Sweeps through a real LocalCluster (2 workers on loopback) and in this process: the grid, failures,
pruning, resuming, a worker killed mid-run, and the same results either way."""
import json
import logging
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from cnnfruit.sweep.space import SearchSpace
from helpers import TINY_SETTINGS, assert_same_model, cli

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed")
pytest.importorskip("distributed", reason="the sweep extra is not installed")
pytest.importorskip("optuna_integration", reason="the sweep extra is not installed")

from cnnfruit.sweep.executors import local_cluster  # noqa: E402
from cnnfruit.sweep.study import Sweep  # noqa: E402

SETTINGS = {**TINY_SETTINGS, "epochs": 1, "normalize": "scale", "optimizer": "adam"}


@pytest.fixture(scope="module")
def client():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with local_cluster(workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from helpers import write_image_folder

    return str(write_image_folder(tmp_path_factory.mktemp("sweepdata"), train=10, test=4))


def outcomes(report):
    return sorted(run["outcome"] for run in report.runs)


def by_run(report):
    return {(json.dumps(run["params"], sort_keys=True), run["seed"]): run for run in report.runs}


def test_a_2x2_grid_through_the_command_on_a_local_cluster_of_two_workers(tmp_path, data, client):
    # --scheduler: the command sends its runs to the module's LocalCluster (local_cluster, as the
    # command's default path uses it) instead of starting one more.
    out = tmp_path / "sweep"
    result = cli("sweep", "--data", data, "--lr", "1e-3,1e-2", "--kernels", "2,3", "--kernel-size", "5",
                 "--hidden", "6", "--epochs", "1", "--normalize", "scale", "--optimizer", "adam", "--seeds", "1",
                 "--scheduler", client.scheduler.address, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert f"4 setting(s) x 1 seed(s) = 4 runs on the Dask cluster at {client.scheduler.address}" in result.output
    report = json.loads((out / "sweep.json").read_text())
    assert report["kind"] == "cnnfruit-sweep" and report["swept"] == ["lr", "kernels"]
    assert report["fixed"]["val_split"] == "block"  # the sweep's default
    assert sorted((r["params"]["lr"], r["params"]["kernels"]) for r in report["rows"]) == [
        (1e-3, 2), (1e-3, 3), (1e-2, 2), (1e-2, 3)]
    accuracies = [r["val_accuracy"] for r in report["rows"]]
    assert accuracies == sorted(accuracies, reverse=True)
    for run in report["runs"]:
        assert run["outcome"] == "finished" and run["epochs"] == 1 and 0 <= run["test_accuracy"] <= 1
        assert (out / run["folder"] / "model.npz").is_file() and (out / run["folder"] / "history.json").is_file()
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("lr,kernels,state,finished,pruned,failed,val_accuracy") and len(csv_lines) == 5
    assert (out / "study.db").is_file()
    plotted = cli("plot", out / "sweep.json", "-o", tmp_path / "sweep.png")
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_over_layer_specs_in_this_process(tmp_path, data):
    import csv

    out = tmp_path / "sweep"
    specs = ["conv2x5, dense6", "conv2x3 same, maxpool2, dense6"]
    result = cli("sweep", "--data", data, "--layers", specs[0], "--layers", specs[1], "--epochs", "1", "--normalize",
                 "scale", "--optimizer", "adam", "--seeds", "1", "--workers", "0", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert f"Sweep of layers ({specs[0]}; {specs[1]}): 2 setting(s)" in result.output
    report = json.loads((out / "sweep.json").read_text())
    assert report["swept"] == ["layers"] and sorted(r["params"]["layers"] for r in report["rows"]) == sorted(specs)
    with open(out / "sweep.csv", newline="") as f:
        assert sorted(row["layers"] for row in csv.DictReader(f)) == sorted(specs)
    for run in report["runs"]:
        assert run["outcome"] == "finished", run


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, data, client):
    # He-normal logits on raw pixels: lr 1e9 blows up at once (a zero logit layer would take longer).
    space = SearchSpace.from_values(**{**SETTINGS, "optimizer": "sgd", "normalize": "none", "init": "he"}, lr=[1e-6, 1e9])
    report = Sweep(space, tmp_path / "s", seeds=(0,), data=data, pruner=None).run(client)
    runs = {run["params"]["lr"]: run for run in report.runs}
    assert runs[1e-6]["outcome"] == "finished"
    assert runs[1e9]["outcome"] == "failed" and runs[1e9]["error"].startswith("Diverged: training diverged")
    failed_row = [row for row in report.rows if row["params"]["lr"] == 1e9][0]
    assert failed_row["state"] == "failed" and failed_row["errors"] == [runs[1e9]["error"]]
    assert report.rows[-1] is failed_row  # no result: last
    trials = optuna.load_study(study_name="cnnfruit-sweep", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}").trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "FAIL"]


def test_a_hopeless_run_is_pruned(tmp_path, data, client):
    # On raw pixels, lr 1e-12 leaves seed 0's first validation loss (about 150) where it started,
    # far above where Adam at 1e-2 takes it. Optuna's threshold pruner makes the test independent
    # of which run ends first (the median pruner compares with the runs already finished).
    space = SearchSpace.from_values(**{**SETTINGS, "epochs": 4, "normalize": "none", "batch_size": 4, "init": "he"},
                                    lr=[1e-2, 1e-12])
    pruner = optuna.pruners.ThresholdPruner(upper=10.0, n_warmup_steps=2)
    report = Sweep(space, tmp_path / "s", seeds=(0,), data=data, pruner=pruner).run(client)
    runs = {run["params"]["lr"]: run for run in report.runs}
    assert runs[1e-2]["outcome"] == "finished" and runs[1e-2]["epochs"] == 4
    hopeless = runs[1e-12]
    assert hopeless["outcome"] == "pruned" and hopeless["epochs"] == 2 and hopeless["test_accuracy"] is None
    history = json.loads((tmp_path / "s" / hopeless["folder"] / "history.json").read_text())
    assert len(history["epochs"]) == 2  # saved where it stopped
    trials = optuna.load_study(study_name="cnnfruit-sweep", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}").trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "PRUNED"]
    assert all(sorted(t.intermediate_values) == list(range(1, t.user_attrs["epochs"] + 1)) for t in trials)


def test_the_command_line_pruners_wait_for_half_the_epochs():
    space = SearchSpace.from_values(**{**SETTINGS, "epochs": 10}, lr=[1e-3, 1e-2])
    median = Sweep(space, "unused", seeds=(0, 1))._optuna_pruner(optuna).inner
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 5)
    swept = SearchSpace.from_values(**{**SETTINGS, "epochs": [6, 4]}, lr=[1e-3, 1e-2])
    assert Sweep(swept, "unused", seeds=(0,))._optuna_pruner(optuna).inner._n_warmup_steps == 2
    hyperband = Sweep(space, "unused", pruner="hyperband")._optuna_pruner(optuna).inner
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert Sweep(space, "unused", pruner=None)._optuna_pruner(optuna) is None


def test_a_run_is_pruned_by_comparison_with_its_own_seed_only():
    # Seed 1's validation cut is harder: its good runs end at 1.0, seed 0's at 0.1.
    study = optuna.create_study(direction="minimize")
    distribution = {"lr": optuna.distributions.FloatDistribution(0, 1)}
    for seed, loss in ((0, 0.1), (0, 0.1), (1, 1.0), (1, 1.0)):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.5}, distributions=distribution, value=loss,
                                                  intermediate_values={3: loss}, user_attrs={"seed": seed}))
    pruner = Sweep(SearchSpace.from_values(**{**SETTINGS, "epochs": 4}, lr=[1e-3, 1e-2]), "unused",
                   seeds=(0, 1))._optuna_pruner(optuna)

    def judged(seed, loss):
        trial = study.ask()
        trial.set_user_attr("seed", seed)
        trial.report(loss, 3)
        return pruner.prune(study, study.trials[trial.number])

    assert not judged(1, 0.9)  # better than seed 1's runs, though worse than the median of all (0.55)
    assert judged(0, 0.5)  # worse than seed 0's runs
    all_seeds = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    assert all_seeds.prune(study, study.trials[4])  # what a pruner blind to seeds would have done


def test_stop_then_resume_runs_only_what_is_missing(tmp_path, data):
    space = SearchSpace.from_values(**{**SETTINGS, "kernels": [2, 3]}, lr=[1e-3, 1e-2])
    stop = threading.Event()

    def stop_once_the_second_run_is_under_way():  # as Ctrl-C would, from outside the sweep's loop
        for _ in range(600):
            if (tmp_path / "s" / "runs" / "trial-0001" / "model.npz").is_file():
                break
            time.sleep(0.05)
        stop.set()

    watcher = threading.Thread(target=stop_once_the_second_run_is_under_way)
    watcher.start()
    first = Sweep(space, tmp_path / "s", seeds=(0,), source=data).run(stop=stop)
    watcher.join()
    # The run under way when the sweep stopped is listed as cancelled.
    assert first.interrupted and outcomes(first) == ["failed", "finished"]
    assert [run["error"] for run in first.runs if run["outcome"] == "failed"] == ["cancelled"]
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert saved["interrupted"] and len(saved["runs"]) == 2
    done = {run["folder"]: os.path.getmtime(tmp_path / "s" / run["folder"] / "model.npz")
            for run in first.runs if run["outcome"] == "finished"}
    result = cli("sweep", "--resume", tmp_path / "s", "--workers", "0", "-q")
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert sorted(run["outcome"] for run in final["runs"]) == ["finished"] * 4 and not final["interrupted"]
    for folder, mtime in done.items():  # the finished runs were not trained again
        assert os.path.getmtime(tmp_path / "s" / folder / "model.npz") == mtime
    again = cli("sweep", "--resume", tmp_path / "s", "--workers", "0", "-q")
    assert again.exit_code == 0 and len(json.loads((tmp_path / "s" / "sweep.json").read_text())["runs"]) == 4


def test_a_sweep_killed_outright_is_resumed_without_losing_its_running_run(tmp_path, data):
    import subprocess

    out = tmp_path / "s"
    command = [sys.executable, "-m", "cnnfruit", "sweep", "--data", data, "--lr", "1e-3,1e-2", "--kernel-size", "5",
               "--kernels", "2", "--hidden", "6", "--epochs", "6", "--normalize", "scale", "--optimizer", "adam", "--no-prune",
               "--seeds", "2", "--workers", "0", "--out", str(out), "-q"]
    sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until one run has ended and the next is under way
            time.sleep(0.1)
            if (out / "sweep.json").is_file() and (out / "runs" / "trial-0001" / "history.json").is_file():
                break
        sweep.kill()  # SIGKILL: no chance to record anything
    finally:
        sweep.wait()
    study = optuna.load_study(study_name="cnnfruit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert "RUNNING" in [t.state.name for t in study.trials]
    result = cli("sweep", "--resume", out, "--workers", "0", "-q")
    assert result.exit_code == 0, result.output
    final = json.loads((out / "sweep.json").read_text())
    assert sorted((r["params"]["lr"], r["seed"], r["outcome"]) for r in final["runs"]) == [
        (1e-3, 0, "finished"), (1e-3, 1, "finished"), (1e-2, 0, "finished"), (1e-2, 1, "finished")]
    study = optuna.load_study(study_name="cnnfruit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    left = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(left) == 1 and left[0].user_attrs["error"] == "cancelled"


def test_the_same_folder_with_another_search_is_refused(tmp_path, data):
    Sweep(SearchSpace.from_values(**SETTINGS, lr=[1e-3]), tmp_path / "s", seeds=(0,), data=data).run()
    with pytest.raises(Exception, match="holds another sweep"):
        Sweep(SearchSpace.from_values(**SETTINGS, lr=[1e-2]), tmp_path / "s", seeds=(0,), data=data).run()


def test_a_worker_killed_mid_run_does_not_lose_it(tmp_path, client):
    from cnnfruit.data.datasets import Dataset, load_embedded

    full = load_embedded()
    small = Dataset("small", full.class_names, full.train.subset(np.arange(0, 1472, 4)), full.test.subset(np.arange(40)))
    space = SearchSpace.from_values(**{**SETTINGS, "epochs": 20}, lr=[1e-3, 3e-3])
    killed = []

    def kill_a_busy_worker():
        pids = client.run(os.getpid)
        runs = tmp_path / "s" / "runs"
        for _ in range(600):
            busy = [worker for worker, keys in client.processing().items() if keys]
            saved = [folder for folder in runs.glob("trial-*") if (folder / "model.npz").is_file()] \
                if runs.is_dir() else []
            if busy and len(saved) == 2:  # both runs under way, each with a checkpoint in its folder
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    report = Sweep(space, tmp_path / "s", seeds=(0,), data=small, pruner=None).run(client)
    killer.join()
    assert killed
    assert len(report.runs) == 2
    for run in report.runs:  # retried by Dask on a live worker, in its own folder: it finishes
        assert run["outcome"] == "finished", run
    client.wait_for_workers(2, timeout=60)


def test_the_cluster_and_this_process_give_the_same_runs(tmp_path, data, client):
    space = SearchSpace.from_values(**{**SETTINGS, "epochs": 2}, lr=[1e-3, 1e-2])
    here = Sweep(space, tmp_path / "here", seeds=(0, 1), data=data, pruner=None).run()
    there = Sweep(space, tmp_path / "there", seeds=(0, 1), data=data, pruner=None).run(client)
    a, b = by_run(here), by_run(there)
    assert sorted(a) == sorted(b) and len(a) == 4
    for key in a:
        for field in ("outcome", "val_accuracy", "val_loss", "best_val_loss", "test_accuracy", "epochs"):
            assert a[key][field] == b[key][field], (key, field)
        assert_same_model(tmp_path / "here" / a[key]["folder"] / "model.npz",
                          tmp_path / "there" / b[key]["folder"] / "model.npz")


def test_without_the_extra_the_command_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    result = cli("sweep", "--lr", "1e-3,1e-2")
    assert result.exit_code == 1
    assert "pip install 'cnnfruit[sweep]'" in result.output


def test_the_command_reads_its_data_as_train_does_and_its_resume_reads_it_again(tmp_path, make_image_folder):
    folder = make_image_folder(tmp_path / "data", train=10, test=4)
    (folder / "train" / "kiwi" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "s"
    args = ["--lr", "1e-3,1e-2", "--kernels", "2", "--kernel-size", "5", "--hidden", "6", "--epochs", "1",
            "--normalize", "scale", "--seeds", "1", "--workers", "0", "-q"]
    refused = cli("sweep", "--data", folder, *args, "--out", out)
    assert refused.exit_code == 1 and "--skip-bad" in refused.output
    result = cli("sweep", "--data", folder, "--skip-bad", "--no-cache", *args, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Skipped 1 unreadable image(s) in {folder}" in result.output
    study = optuna.load_study(study_name="cnnfruit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert study.user_attrs["cnnfruit_sweep"]["data_options"] == {"skip_bad": True, "test_fraction": None, "seed": 0}
    again = cli("sweep", "--resume", out, "--workers", "0", "-q")  # the broken image is skipped again
    assert again.exit_code == 0, again.output
    assert cli("sweep", "--resume", out, "--skip-bad", "-q").exit_code == 1  # a resumed sweep keeps its data


def test_a_worker_with_two_threads_runs_two_runs_at_once_as_one_at_a_time(tmp_path, data):
    """Dask's --nthreads 2: two runs share a worker process, taking turns step by step
    (threads.compute_lock); then a worker killed with no retries left loses its runs to the
    cluster, and resuming the sweep runs them again."""
    import dask
    from distributed import Client, LocalCluster

    # Work enough for the parallel kernels (the tiny network's steps run their serial twins).
    wide = {**SETTINGS, "kernels": 8, "kernel_size": 4, "hidden": (32,), "batch_size": 16, "epochs": 2}
    space = SearchSpace.from_values(**wide, lr=[1e-3, 1e-2])
    here = Sweep(space, tmp_path / "here", seeds=(0,), data=data, pruner=None).run()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=None,
                         silence_logs=logging.ERROR, env={"NUMBA_NUM_THREADS": "2"}) as cluster, \
            Client(cluster) as client:
        there = Sweep(space, tmp_path / "there", seeds=(0,), data=data, pruner=None).run(client)
        a, b = by_run(here), by_run(there)
        assert sorted(a) == sorted(b) and [run["outcome"] for run in b.values()] == ["finished"] * 2
        for key in a:
            assert_same_model(tmp_path / "here" / a[key]["folder"] / "model.npz",
                              tmp_path / "there" / b[key]["folder"] / "model.npz")

        long = SearchSpace.from_values(**{**SETTINGS, "epochs": 30}, lr=[1e-3, 1e-2])
        pid = next(iter(client.run(os.getpid).values()))

        def kill_the_worker():
            runs = tmp_path / "lost" / "runs"
            for _ in range(600):
                if runs.is_dir() and len([f for f in runs.glob("trial-*") if (f / "model.npz").is_file()]) == 2:
                    os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_the_worker)
        killer.start()
        lost = Sweep(long, tmp_path / "lost", seeds=(0,), data=data, pruner=None).run(client)
        killer.join()
    assert [run["outcome"] for run in lost.runs] == ["failed"] * 2
    assert all(run["error"].startswith("lost by the cluster (KilledWorker") for run in lost.runs), lost.runs
    result = cli("sweep", "--resume", tmp_path / "lost", "--workers", "0", "-q")
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "lost" / "sweep.json").read_text())
    assert sorted((run["params"]["lr"], run["outcome"]) for run in final["runs"]) == [
        (1e-3, "finished"), (1e-2, "finished")]


def test_a_lost_or_emptied_study_never_overwrites_earlier_results(tmp_path, data):
    space = SearchSpace.from_values(**SETTINGS, lr=[1e-3, 1e-2])
    Sweep(space, tmp_path / "s", seeds=(0,), data=data, pruner=None).run()
    folder = tmp_path / "s"
    kept = {name: (folder / name).read_bytes() for name in ("sweep.json", "sweep.csv")}
    model = (folder / "runs" / "trial-0000" / "model.npz").read_bytes()
    study = (folder / "study.db").read_bytes()
    for lose in ("emptied", "deleted"):
        if lose == "emptied":
            (folder / "study.db").write_bytes(b"")
        else:
            (folder / "study.db").unlink()
        with pytest.raises(Exception, match=r"holds results that its study.db does not know \(sweep.json, sweep.csv, "
                                            r"runs/trial-0000 and 1 more\): the study was deleted, emptied or replaced"):
            Sweep(space, folder, seeds=(0,), data=data, pruner=None).run()
        result = cli("sweep", "--data", data, "--lr", "1e-3,1e-2", "--kernels", "2", "--kernel-size", "5", "--hidden",
                     "6", "--epochs", "1", "--normalize", "scale", "--optimizer", "adam", "--seeds", "1", "--no-prune",
                     "--workers", "0", "--out", folder, "-q")
        assert result.exit_code == 1 and "holds results that its study.db does not know" in result.output
        assert {name: (folder / name).read_bytes() for name in kept} == kept
        assert (folder / "runs" / "trial-0000" / "model.npz").read_bytes() == model
    (folder / "study.db").write_bytes(study)  # the study put back: the sweep goes on
    assert len(Sweep(space, folder, seeds=(0,), data=data, pruner=None).run().runs) == 2


def damaged(study):
    data = bytearray(study)
    for at in range(200, len(data), 97):
        data[at] ^= 0x5A
    return bytes(data)


@pytest.mark.parametrize("damage", ["truncated", "flipped bytes", "a folder", "a fifo", "not sqlite", "another study"])
def test_a_damaged_study_db_is_one_error_line(tmp_path, data, damage):
    space = SearchSpace.from_values(**SETTINGS, lr=[1e-3, 1e-2])
    folder = tmp_path / "s"
    Sweep(space, folder, seeds=(0,), data=data, pruner=None).run()
    path = folder / "study.db"
    study = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(study[:5000])
    elif damage == "flipped bytes":
        path.write_bytes(damaged(study))
    elif damage == "a folder":
        path.unlink()
        path.mkdir()
    elif damage == "a fifo":
        path.unlink()
        os.mkfifo(path)
    elif damage == "not sqlite":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    else:
        path.unlink()
        optuna.create_study(study_name="someone-else", storage=f"sqlite:///{path}")
    for args in (["sweep", "--resume", folder, "--workers", "0", "-q"],
                 ["sweep", "--data", data, "--lr", "1e-3,1e-2", "--kernels", "2", "--kernel-size", "5", "--hidden",
                  "6", "--epochs", "1", "--normalize", "scale", "--optimizer", "adam", "--seeds", "1", "--no-prune",
                  "--workers", "0", "--out", folder, "-q"]):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert "Traceback" not in result.output and lines[-1].startswith("Error: "), result.output
        assert len(lines) <= 3, result.output  # the error, after the lines that say what the sweep is and that it goes on


def test_resume_refuses_the_flags_it_would_ignore(tmp_path, data):
    Sweep(SearchSpace.from_values(**SETTINGS, lr=[1e-3]), tmp_path / "s", seeds=(0,), data=data).run()
    result = cli("sweep", "--resume", tmp_path / "s", "--seeds", "2", "--pruner", "hyperband", "--workers", "0")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: --resume goes on with the sweep as it was started (its settings, seeds, trials, data, pruner and "
        "folder): leave out --seeds, --pruner")


@pytest.mark.parametrize("address", ["foo", "tcp://127.0.0.1:notaport", "bogus://x:1", "tcp://[::1"])
def test_a_malformed_scheduler_address_is_one_error_before_any_work(tmp_path, address):
    result = cli("sweep", "--lr", "1e-3,1e-2", "--scheduler", address, "--out", tmp_path / "s")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: --scheduler {address!r} is not a Dask scheduler "
                                                     "address such as tcp://10.0.0.5:8786 (")
    assert not (tmp_path / "s").exists()
