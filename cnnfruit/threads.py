"""Threads: how many cores the kernels use, and the one-thread BLAS that keeps sums repeatable.

Two facts decide these settings:
- OpenBLAS splits some float32 products differently with one thread or several, so the same
  training run would give other weights on a machine with another core count. cnnfruit therefore
  runs BLAS on one thread and uses the cores itself, with fixed slices of each product (see
  dispatch.py). `fit`, `Classifier.predict_proba` and `Classifier.evaluate` hold BLAS to one thread
  for their duration (`one_blas_thread`), so their results are repeatable bit for bit whatever
  else the process has set; nothing is changed on import.
- Numba's default OpenMP threading layer spin-waits at every parallel region's barrier; a
  training step opens a dozen short ones, and on a shared machine a descheduled spinning thread
  stalls its partner. The workqueue layer's idle threads sleep.

`configure_threads()` applies both for the whole process; the command line calls it first, and
a notebook may. Measurements behind both choices: docs/performance.md.
"""
import os
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
    threadpool_limits(limits=1, user_api="blas")
    return numba.get_num_threads()


def import_numba():
    """numba, or a CnnfruitError saying which setting to fix: Numba checks NUMBA_NUM_THREADS as it is
    imported (0 raised ValueError), so the command line imports it here first."""
    try:
        import numba
    except ValueError as err:
        value = os.environ.get("NUMBA_NUM_THREADS")
        if value is None:
            raise CnnfruitError(f"Numba cannot start: {err}") from None
        raise CnnfruitError(f"NUMBA_NUM_THREADS={value} is not a thread count Numba accepts ({err}); set it to a "
                            f"whole number from 1 to {os.cpu_count() or 1}, or unset it") from None
    return numba


@contextmanager
def one_blas_thread():
    """BLAS on one thread inside the block, restored after (about 0.3 ms to enter)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
