"""How the kernels are compiled: fast-math flags, the decorators, and serial twins of parallel kernels.

Every kernel is cached on disk (cache=True), so a process after the first loads machine code
instead of compiling it.
"""
import types

from cnnfruit.threads import import_numba

numba = import_numba()  # with a folder for the compiled code; every kernel module takes numba from here

# Fast-math flags in one place. nnan/ninf are left out so that NaN and inf checks stay honest;
# reassoc lets LLVM vectorise reductions (the same order on every run, whatever the threads).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# Without reassoc, for kernels whose serial twin must sum in exactly the parallel kernel's order:
# LLVM may vectorise one reduction differently in two compiles (seen on AMD Zen 4 with a conv
# gradient's sum over images and pixels, which then differed in the last bit).
FASTMATH_ORDERED = FASTMATH - {"reassoc"}

njit_parallel = numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
njit_serial = numba.njit(cache=True, fastmath=FASTMATH)
njit_parallel_ordered = numba.njit(parallel=True, cache=True, fastmath=FASTMATH_ORDERED)

# Tile kernels (tiles.py, and the optimizer updates on one tile) run many at once on Python
# threads, each on one tile of a product for a worker of tiled.py: they release the GIL (nogil)
# and never use prange. Their flags leave out reassoc: a sum here runs in the order it is
# written, in whatever compile (each array layout gets its own), so no result hangs on how LLVM
# vectorised one copy. error_model "numpy" (as parallel kernels have): x / 0 gives inf instead
# of raising, which drops the per-element zero check that otherwise keeps a loop with a division
# from vectorising.
FASTMATH_TILE = FASTMATH - {"reassoc"}
njit_tile = numba.njit(cache=True, nogil=True, fastmath=FASTMATH_TILE, error_model="numpy")


def serial_twin(kernel):
    """`kernel` compiled without threads (its prange runs as range), for work too small to share.

    The twin is a copy of the Python function under its own name, so that Numba's on-disk cache,
    which keys files by function name and bytecode but not by compile flags, keeps the two apart.
    """
    py_func = kernel.py_func
    twin = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                              py_func.__defaults__, py_func.__closure__)
    twin.__qualname__ = py_func.__qualname__ + "_serial"
    twin.__doc__ = py_func.__doc__
    return numba.njit(cache=True, fastmath=kernel.targetoptions["fastmath"])(twin)
