"""Where the runs of a sweep go: one at a time on a thread of this process, or as tasks on a Dask
cluster; each executor submits a RunTask, gives back its RunOutcome, and cancels runs in flight.

On a cluster the workers write the run folders, so the sweep folder must be the same folder for
the client, the scheduler and every worker (one machine, or a shared file system):
`check_shared_folder` checks it before a sweep starts.
"""
import logging
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from cnnfruit.errors import CnnfruitError
from cnnfruit.files import write_text_atomically
from cnnfruit.sweep.worker import RunOutcome, run_one

INSTALL_HINT = "pip install 'cnnfruit[sweep]'"


def require_extra(cluster=True):
    """Optuna (and for a cluster Dask and optuna-integration), or an error that says how to get them."""
    from importlib import import_module

    names = ["optuna"] + (["distributed", "optuna_integration"] if cluster else [])
    for name in names:
        try:
            import_module(name)
        except ImportError:
            raise CnnfruitError(f"sweeps need {name.replace('_', '-')}, from the sweep extra: {INSTALL_HINT}") from None


class InProcess:
    """Runs one at a time on a thread of this process; a cancelled run stops after its step."""

    slots = 1

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.stops = {}

    def submit(self, task):
        stop = threading.Event()
        future = self.pool.submit(run_one, task, stop)
        self.stops[future] = stop
        return future

    def outcome(self, future):
        self.stops.pop(future, None)
        return future.result()

    def cancel(self, futures):
        for future in futures:
            future.cancel()
            self.stops.pop(future, threading.Event()).set()
        self.pool.shutdown(wait=True)

    def free_slots(self, busy):
        return self.slots - busy


class OnDask:
    """Runs as Dask tasks; a worker that dies mid-run has its run retried by Dask on another."""

    def __init__(self, client):
        self.client = client

    def submit(self, task):
        return self.client.submit(run_one, task, pure=False)

    def outcome(self, future):
        try:
            return future.result()
        except Exception as err:  # noqa: BLE001 - the cluster lost the run: a worker died too often, say
            return RunOutcome("failed", error=f"{type(err).__name__}: {err}")

    def cancel(self, futures):
        self.client.cancel(list(futures))

    def free_slots(self, busy):
        return sum(self.client.nthreads().values()) - busy


@contextmanager
def local_cluster(workers, threads=1):
    """A Dask client on a LocalCluster of `workers` processes, each running one run at a time with
    `threads` Numba threads (so workers x threads should not exceed the cores)."""
    require_extra()
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR,
                           env={"NUMBA_NUM_THREADS": str(threads)})
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def default_workers(threads=1):
    """As many workers as fit the cores with `threads` Numba threads each, at least one."""
    return max(1, (os.cpu_count() or 1) // threads)


def check_shared_folder(client, folder):
    """The sweep folder must be the same on the scheduler and every worker: check with a token."""
    token = secrets.token_hex(8)
    marker = os.path.join(folder, ".sweep-token")
    write_text_atomically(marker, token)
    try:
        where = {"the scheduler": client.run_on_scheduler(_read_token, marker)}
        where.update(client.run(_read_token, marker))
    finally:
        os.unlink(marker)
    missing = [name for name, seen in where.items() if seen != token]
    if missing:
        raise CnnfruitError(f"the sweep folder {folder} is not the same folder on {', '.join(missing)}: the "
                            "scheduler and every worker must see it at the same path (one machine, or a shared "
                            "file system)")


def _read_token(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None
