"""The input-gradient kernel gives the same bits with 1 or 2 Numba threads (fresh processes)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Big enough for dispatch.sized to pick the parallel kernel; the bytes' digest is printed.
SCRIPT = """
import hashlib, numpy as np
from cnnfruit.nn import dispatch
from cnnfruit.nn import kernels
rng = np.random.default_rng(5)
N, C, H, K, S = 6, 3, 32, 8, 4
P = H - S + 1
dout = np.maximum(rng.standard_normal((N, K, P, P)), 0).astype(np.float32)
w = rng.standard_normal((K, C, S, S)).astype(np.float32)
dx = np.empty((N, C, H, H), np.float32)
assert dispatch.sized(kernels.conv_backward_input, dispatch.conv_work(dx, w)) is kernels.conv_backward_input
dispatch.conv_backward_input(dx, dout, w)
print(hashlib.sha256(dx.tobytes()).hexdigest())
"""


def digest_with(threads):
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_conv_backward_input_is_the_same_with_one_or_two_threads():
    one, two = digest_with(1), digest_with(2)
    assert len(one) == 64 and one == two
