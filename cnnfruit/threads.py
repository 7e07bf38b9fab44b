"""Threads: how many cores the kernels use, the one-thread BLAS that keeps sums repeatable, and
the lock that lets the library be called from several threads at once.

Three facts decide these settings:
- OpenBLAS splits some float32 products differently with one thread or several, so the same
  training run would give other weights on a machine with another core count. cnnfruit therefore
  runs BLAS on one thread and uses the cores itself, with fixed slices of each product (see
  dispatch.py). Every unit of work holds BLAS to one thread while it runs (`compute_lock`), so
  results are repeatable bit for bit whatever else the process has set; nothing is changed on import.
- Numba's default OpenMP threading layer spin-waits at every parallel region's barrier; a
  training step opens a dozen short ones, and on a shared machine a descheduled spinning thread
  stalls its partner. The workqueue layer's idle threads sleep.
- The workqueue layer aborts the process when two threads launch parallel kernels at once, a
  Network computes in buffers of its own (one shared Classifier is one Network), and the kernels
  and BLAS tiles already keep every core busy: two computations at once would only contend. So
  the library's entry points (inference/, training/, the gradient check) run each unit of work,
  one batch's forward pass or one training step, under one process-wide lock, `compute_lock`, and
  copy their results out before they release it. Threads then take turns step by step: a `fit`
  in one thread and `predict` calls in others interleave, and each gives the bits it gives alone.

`configure_threads()` applies the first two for the whole process; the command line calls it
first, and a notebook may. Measurements behind the choices: docs/performance.md and
docs/reliability.md ("Threads").
"""
import os
import stat
import threading
from contextlib import contextmanager

from cnnfruit.errors import CnnfruitError, SettingError


def configure_threads(threads=None):
    """Process-wide: Numba's workqueue layer (unless NUMBA_THREADING_LAYER is set), `threads`
    Numba threads if given (default: NUMBA_NUM_THREADS, else every core), and BLAS on one thread.

    Call it before the first training step or prediction: Numba fixes its layer when its first
    parallel kernel runs. Returns the number of Numba threads in use.
    """
    numba = import_numba()
    from threadpoolctl import threadpool_limits

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
    if threads is not None:
        if not isinstance(threads, int) or not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
            raise SettingError("{threads} must be a whole number from 1 to {most}, got {value!r}",
                               most=numba.config.NUMBA_NUM_THREADS, value=threads)
        numba.set_num_threads(threads)
    with _LOCK:  # not while a unit of work holds BLAS to one thread: its exit would undo this
        threadpool_limits(limits=1, user_api="blas")
    return numba.get_num_threads()


def import_numba():
    """numba, ready to compile cnnfruit's kernels, or a CnnfruitError saying which setting to fix.

    Numba checks NUMBA_NUM_THREADS as it is imported (0 raises ValueError), so the command line
    imports it here first, and so do the kernels (nn/kernels/jit.py), which also need a folder for
    their compiled code (numba_cache_folder).
    """
    try:
        import numba
    except ValueError as err:
        value = os.environ.get("NUMBA_NUM_THREADS")
        if value is None:
            raise CnnfruitError(f"Numba cannot start: {err}") from None
        raise CnnfruitError(f"NUMBA_NUM_THREADS={value} is not a thread count Numba accepts ({err}); set it to a "
                            f"whole number from 1 to {os.cpu_count() or 1}, or unset it") from None
    numba_cache_folder(numba)
    return numba


def numba_cache_folder(numba):
    """Make sure Numba has somewhere to write the kernels' compiled code (they are cache=True).

    Numba writes beside the source (__pycache__) or in the user's cache folder (~/.cache/numba);
    with neither writable (a read-only install, a service whose HOME is not writable) decorating
    the first kernel raises RuntimeError, "no locator available". Then, and only then (and unless
    NUMBA_CACHE_DIR says where), the compiled code goes to a private folder in the temporary
    directory: cnnfruit-numba-<uid>, made 0700 and used only if this user owns it and no one else
    may write to it, since Numba loads what it finds there as machine code; else a fresh one.
    """
    if numba.config.CACHE_DIR:
        return
    try:
        from numba.core.caching import FunctionCache

        FunctionCache(numba_cache_folder)  # the locator Numba would find for a function of this package
        return
    except RuntimeError:
        pass
    except Exception:  # noqa: BLE001 - another Numba's internals: leave the choice to Numba
        return
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), f"cnnfruit-numba-{os.getuid()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if not (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022):
            folder = tempfile.mkdtemp(prefix="cnnfruit-numba-")
    except OSError as err:
        raise CnnfruitError(f"Numba finds no folder to write compiled code to (beside cnnfruit, in the user's "
                            f"cache, or in {tempfile.gettempdir()}: {err.strerror or err}); set NUMBA_CACHE_DIR to "
                            "a writable folder") from None
    numba.config.CACHE_DIR = folder


_LOCK = threading.RLock()
_held = 0  # how deep the lock's owner holds it; only the owner reads or writes it
_blas_libraries = None  # threadpoolctl's controllers of the BLAS libraries loaded, found once


@contextmanager
def compute_lock():
    """Hold the process-wide compute lock, with BLAS on one thread, for one unit of work.

    Re-entrant: a unit of work may call another (evaluate with test-time augmentation predicts).
    Only the outermost hold limits BLAS and restores what it found, so two threads' limits never
    undo each other. Costs a few microseconds when free and BLAS already runs on one thread.
    """
    global _held
    with _LOCK:
        changed = _blas_on_one_thread() if _held == 0 else []
        _held += 1
        try:
            yield
        finally:
            _held -= 1
            if changed:
                _restore_blas(changed)


def _blas_on_one_thread():
    """[(library, its thread count)] of the BLAS libraries that were not on one thread, now on one.

    threadpoolctl lets only one thread at a time change OpenBLAS's shared thread pool (the first
    to set it and keep it, as configure_threads does) and silently ignores the others; the compute
    lock already makes the changes one at a time, so its holder takes over.
    """
    global _blas_libraries
    import threadpoolctl

    if _blas_libraries is None:  # found once: finding them scans every loaded library (0.5 ms). Those
        # loaded by then; numpy's, the only BLAS cnnfruit calls, came with numpy.
        _blas_libraries = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    changed = [(library, library.get_num_threads()) for library in _blas_libraries]
    changed = [(library, threads) for library, threads in changed if threads != 1]
    if changed:
        _take_blas_control(force=True)
        for library, _ in changed:
            library.set_num_threads(1)
    return changed


def _restore_blas(changed):
    for library, threads in changed:
        library.set_num_threads(threads)
    _take_blas_control(force=False)


def _take_blas_control(force):
    """force: make this thread the one threadpoolctl lets set OpenBLAS's threads; else give that up."""
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:  # None: a threadpoolctl without the rule
        clear(force=force)
