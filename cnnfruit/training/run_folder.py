"""Run folders: where a training run keeps model.npz, history.json and best.npz.

Every file is rewritten atomically at each save, so a crash or a kill leaves the previous
complete version, never a half-written one. A folder is never clobbered:

- A new run refuses a folder that already holds a run, unless told to overwrite it; overwriting
  deletes the old run's files first, so no stale best.npz survives beside the new model.
- While a process writes a run folder it holds a lock on it (an OS file lock through the
  `filelock` library, released by the OS even if the process is killed), and records who it is:
  a second process gets an error naming the first one's pid, host and start time.
- Opening a folder removes the `.tmp-*` files that no live writer owns (left by a hard kill).
"""
import copy
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from cnnfruit import checkpoint
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.files import remove_stale_temporaries, write_text_atomically
from cnnfruit.training.logs import history_csv

MODEL_FILE = "model.npz"  # the last state: weights, optimizer, generator, history
HISTORY_FILE = "history.json"
HISTORY_CSV_FILE = "history.csv"  # the same epochs as a table (logs.history_csv)
BEST_FILE = "best.npz"  # the epoch with the lowest validation loss
RUN_FILES = (MODEL_FILE, HISTORY_FILE, HISTORY_CSV_FILE, BEST_FILE)
LOCK_FILE = ".cnnfruit.lock"  # locked while a process writes the run; the empty file stays
OWNER_FILE = ".cnnfruit.owner"  # JSON: pid, host, start time of the process holding the lock


def new_run_folder(parent="runs"):
    """A new folder under parent named from the date and time, made here so no other run takes it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        os.makedirs(parent, exist_ok=True)
        suffix = 1
        while True:
            folder = os.path.join(parent, stamp if suffix == 1 else f"{stamp}-{suffix}")
            try:
                os.mkdir(folder)
                return folder
            except FileExistsError:
                suffix += 1
    except OSError as err:
        raise CnnfruitError(f"cannot create a run folder under {parent}: {err.strerror or err}") from None


class RunFolder:
    """A run's folder and the files in it; `saved_at` says which point of training they hold."""

    def __init__(self, folder):
        self.folder = folder
        self.model_path = os.path.join(folder, MODEL_FILE)
        self.history_path = os.path.join(folder, HISTORY_FILE)
        self.history_csv_path = os.path.join(folder, HISTORY_CSV_FILE)
        self.best_path = os.path.join(folder, BEST_FILE)
        self.saved_at = None  # the point of training that the files on disk hold, in words
        self._lock = None
        self._writer = None  # one background thread that writes the saves in order
        self._pending = []  # their futures, until flush() has seen them done
        self._snapshot_point, self._snapshot_arrays = None, None  # see _snapshot

    @classmethod
    def create(cls, folder=None, *, overwrite=False, resuming=False):
        """Make the folder (a new one under ./runs/ if None), lock it, and check that it can be written.

        A folder that holds a run is refused unless `resuming` (the run continues there) or
        `overwrite` (its run files are deleted first).
        """
        folder = folder or new_run_folder()
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise CnnfruitError(f"cannot create output folder {folder}: {err.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise CnnfruitError(f"output folder {folder} is not writable")
        files = cls(folder)
        files.lock()
        try:
            remove_stale_temporaries(folder)
            held = files.run_files()
            if held and not resuming:
                if not overwrite:
                    raise SettingError("{folder} already holds a run ({held}); to continue it use {resume} {model}, "
                                       "to replace it use {overwrite}", folder=folder, held=", ".join(held),
                                       model=files.model_path)
                files.clear()
        except BaseException:
            files.unlock()
            raise
        return files

    def run_files(self):
        """The run files (model.npz, history.json, history.csv, best.npz) that the folder holds now."""
        return [name for name in RUN_FILES if os.path.lexists(os.path.join(self.folder, name))]

    def clear(self):
        for name in self.run_files():
            try:
                os.unlink(os.path.join(self.folder, name))
            except OSError as err:
                raise CnnfruitError(f"cannot delete the old {name} in {self.folder}: {err.strerror or err}") from None

    # ---- the lock

    def lock(self):
        """Hold the folder's lock (a no-op if this RunFolder holds it); CnnfruitError naming the holder if
        another process, or another run in this one, holds it."""
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return
        lock = FileLock(os.path.join(self.folder, LOCK_FILE), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise CnnfruitError(f"run folder {self.folder} is in use by {self._holder()}; wait for that run to end, "
                                "or use another folder") from None
        except OSError as err:
            raise CnnfruitError(f"cannot lock run folder {self.folder}: {err.strerror or err}") from None
        self._lock = lock
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            write_text_atomically(os.path.join(self.folder, OWNER_FILE), json.dumps(owner) + "\n")
        except OSError as err:
            self.unlock()
            raise CnnfruitError(f"cannot write to {self.folder}: {err.strerror or err}") from None

    def unlock(self):
        if self._lock is None:
            return
        try:
            os.unlink(os.path.join(self.folder, OWNER_FILE))
        except OSError:
            pass
        self._lock.release()
        self._lock = None

    def _holder(self):
        """Who holds the lock, in words, from the record it wrote."""
        try:
            with open(os.path.join(self.folder, OWNER_FILE), encoding="utf-8") as f:
                owner = json.loads(f.read(4096))
            return f"process {int(owner['pid'])} on {str(owner['host'])[:255]}, started {str(owner['started'])[:40]}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process (which has not said which yet)"

    # ---- saving, off the training thread

    def save(self, loop):
        """model.npz, history.json and history.csv as the loop stands now.

        The state is copied here and written by a background thread, in order, each file
        atomically, while training goes on (a save of the default network takes 20-120 ms, a
        good share of an epoch at batch 32). flush() waits for the writes; `saved_at` says what
        the files hold once written. A write that failed stops the run at the next save.
        """
        ckpt, history = self._snapshot(loop), loop.history
        texts = {self.history_path: history.to_json(), self.history_csv_path: history_csv(history)}
        self._submit(self._write, self.model_path, ckpt, texts, describe_point(loop))

    def save_best(self, loop):
        self._submit(self._write, self.best_path, self._snapshot(loop), {}, None)

    def _snapshot(self, loop):
        """snapshot(loop), whose arrays are copied once per point of training.

        Weights and optimizer state change only with a step, so the saves made at one point
        (best.npz and model.npz after an epoch, model.npz again once the test score is in) share
        one copy: with Adam on the default network each copy is 68 MB, and three of them waiting
        for the writer were the peak of a run's memory.
        """
        point = (loop.epoch, None if loop.partial is None else loop.partial["step"])
        if point != self._snapshot_point:
            self._snapshot_point, self._snapshot_arrays = point, copy_arrays(loop.checkpoint())
        params, optimizer_state = self._snapshot_arrays
        return snapshot(loop, params, optimizer_state)

    def flush(self):
        """Wait for every queued write; a CnnfruitError if one of them failed."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def settle(self):
        """Wait for the queued writes without raising: for a run that is ending on another error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()

    def abandon(self):
        """Drop the writes not started yet (a second Ctrl-C); the one under way still ends whole."""
        for future in self._pending:
            future.cancel()
        self._pending = []

    def _submit(self, write, *args):
        done = [future for future in self._pending if future.done()]
        for future in done:
            self._pending.remove(future)
            future.result()  # raises the error of a failed write, at the next save
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="cnnfruit-save")
        self._pending.append(self._writer.submit(write, *args))

    def _write(self, path, ckpt, texts, point):
        try:
            checkpoint.save(path, ckpt)
            for text_path, text in texts.items():
                write_text_atomically(text_path, text)
        except OSError as err:
            raise CnnfruitError(f"cannot write to {self.folder}: {err.strerror or err}") from None
        if point is not None:
            self.saved_at = point


def copy_arrays(ckpt):
    """Copies of a checkpoint's parameters and optimizer state, which training goes on changing."""
    return ({name: value.copy() for name, value in ckpt.params.items()},
            {name: value.copy() for name, value in ckpt.optimizer_state.items()})


def snapshot(loop, params=None, optimizer_state=None):
    """The loop's checkpoint with its own copies of every array and record, safe to write later;
    params and optimizer_state, if given, are copies made earlier at this same point of training."""
    ckpt = loop.checkpoint()
    if params is None:
        params, optimizer_state = copy_arrays(ckpt)
    return replace(copy.deepcopy(replace(ckpt, params={}, optimizer_state={})), params=params,
                   optimizer_state=optimizer_state)


def describe_point(loop):
    """Where training stands, in words: the initial weights, the end of an epoch, or mid-epoch."""
    if loop.partial is not None:
        return f"epoch {loop.epoch + 1} up to step {loop.partial['step']} of {loop.steps_per_epoch}"
    if loop.epoch == 0:
        return "the initial weights"
    return f"the end of epoch {loop.epoch}"
