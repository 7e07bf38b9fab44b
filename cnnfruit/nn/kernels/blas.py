"""numpy's own BLAS, callable from inside a Numba kernel: its gemm, called by address.

A conv layer's tile (layers/conv.py) is a few short products with copies around each one. Run
from Python, every step takes the GIL for a few microseconds, and two workers that both need
it wait for each other: measured on the VGG-style stack at batch 32, a conv layer's forward ran
only 1.4x faster on 2 threads than on 1. A kernel that holds the whole tile calls gemm itself
and runs from start to end without the GIL.

The function called is the one numpy calls for matmul, cblas_sgemm or cblas_dgemm of the
OpenBLAS that numpy's wheels carry (ILP64, its symbols suffixed 64_), so a product gives the
same bits either way. Its address reaches the kernel as an argument, never as a constant
compiled in (which Numba could not cache), and not as a first-class function object either,
whose every call costs 14 us of argument checks under the GIL. Where numpy has another BLAS
(a conda build with MKL, Apple's Accelerate), `gemm_address` returns None and the conv layer
runs its products through np.matmul from Python instead: the same arithmetic, slower on 2 threads.
"""
import ctypes
import glob
import os

import numpy as np

from cnnfruit.threads import import_numba

numba = import_numba()
from llvmlite import ir  # noqa: E402  (llvmlite comes with Numba)
from numba import types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

# CBLAS's enums, as the int32 values the C interface takes
ROW_MAJOR, NO_TRANS, TRANS = np.int32(101), np.int32(111), np.int32(112)
SYMBOLS = {np.float32: ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
           np.float64: ("scipy_cblas_dgemm64_", "cblas_dgemm64_")}


@intrinsic
def gemm(typingctx, address, layout, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc):
    """Inside a kernel: cblas_?gemm at `address` (an int64 from gemm_address), called with the
    rest of the arguments as they are: int32 enums, int64 sizes, alpha and beta of the arrays'
    float type, the arrays as their data addresses (array.ctypes.data)."""
    signature = types.void(address, layout, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, sig, args):
        c_function = ir.FunctionType(ir.VoidType(), [context.get_value_type(t) for t in sig.args[1:]])
        builder.call(builder.inttoptr(args[0], c_function.as_pointer()), args[1:])
        return context.get_dummy_value()

    return signature, codegen


_found = {}


def gemm_address(dtype):
    """The address of numpy's cblas gemm for float32 or float64, as gemm() takes it, or None if
    numpy's BLAS is not an ILP64 OpenBLAS whose library can be found."""
    dtype = np.dtype(dtype).type
    if dtype not in _found:
        _found[dtype] = _load(dtype)
    return _found[dtype]


def _load(dtype):
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "lib*openblas*"))):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in SYMBOLS[dtype]:
            function = getattr(library, symbol, None)
            if function is not None:
                return ctypes.cast(function, ctypes.c_void_p).value
    return None
