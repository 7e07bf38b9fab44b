"""Train the report's network with cnnfruit, PyTorch (optional) and plain numpy; print one table.

    python benchmarks/bench.py [--batches 1,8,32,128] [--optimizer-rows adam:32,momentum:32]
                               [--repeats 3] [--images 1024]

Every implementation runs the same math: the report's network (cnnfruit's default Architecture:
1x32x32 raw 0..255 grey pixels, conv 8x4x4 + ReLU, dense 6728-841-29-3 with ReLUs), the loss
SUMMED over the batch, plain SGD at lr 1e-6, starting from the SAME He-normal weights
(cnnfruit's init_parameters, seed 0) on the same image order; every size comes from Architecture.
PyTorch runs twice, on numba's thread count and on one thread. Each implementation lives in its
own worker process (so its peak memory is its own), warms up first, then the workers take turns
- cnnfruit, torch, torch-1t, numpy, cnnfruit, ... - and each cell is the median of --repeats
runs. A run trains on --images images (a fixed number of steps; by default 1024, the whole
1030-image training split to the batch) and is scaled to seconds per epoch of 1030 images. The
model goes on training from run to run, as in an epoch loop. (Runs of 256 images, the default
until 2026-11-30, time only the first steps from the initial weights, where cnnfruit finds the
least dead work to skip: its b128 epoch then reads 0.36 s instead of 0.25 s, PyTorch's 0.29 s
either way.) `--check` first verifies that the implementations agree
after a few steps. The --optimizer-rows train the same way with momentum (0.9, lr 1e-6) or Adam
(lr 1e-4, betas 0.9/0.999, eps 1e-8) against torch.optim.SGD(momentum=0.9) / torch.optim.Adam
with PyTorch's defaults (on the CPU its single-tensor loop) and, as "torch-foreach", with
foreach=True; numpy has no row there. Inference runs the test split in batches of 256 for all. `vs torch` is the speed-up over PyTorch on as many
threads as numba (the comparison the goals are set in); `vs best` over the faster of that and PyTorch on one
thread, which on a busy machine is often the faster.

FLOP counts come from Architecture.flops_per_image (forward and both backward products of the
conv and dense layers, 2 FLOPs per multiply-add); the sgemm peak is numpy's float32 matmul of
two 2048x2048 matrices, measured in the same run. Pure-Python timing, no third-party harness.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

LR = 1e-6
SEED = 0
# The optimizers of the extra rows; momentum and SGD use LR, Adam its own (raw 0..255 pixels).
OPTIMIZER_SETTINGS = {"sgd": {"lr": LR}, "momentum": {"lr": LR, "momentum": 0.9},
                      "adam": {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8}}
INFER_BATCH = 256
INFER_PASSES = 8  # passes over the test split per timed inference run
# A pause before each command to a worker. The workers take turns, and the one that just finished
# may leave threads spinning: OpenBLAS's (numpy's worker) and OpenMP's (PyTorch's) wait busily
# for more work before they sleep. Without the pause, whoever runs next shares the cores with
# them: cnnfruit's inference, right after numpy's, measured 11,340 images/s without the pause, 13,153 with it.
SETTLE_SECONDS = 0.5


# ----------------------------------------------------------------------------------------------
# the data and the shared starting point


def load_data():
    """(x_train (N, C, H, W) in the first epoch's order, y_train, x_test, y_test) as cnnfruit's trainer makes them."""
    from cnnfruit.config import TrainConfig
    from cnnfruit.data.datasets import load_embedded
    from cnnfruit.data.splits import generators
    from cnnfruit.training.loop import split_images

    _, split_rng, shuffle_rng = generators(SEED)
    data = split_images(load_embedded(), TrainConfig(seed=SEED), split_rng)
    order = shuffle_rng.permutation(len(data.y_train))
    return data.inputs(data.images_train[order]), data.y_train[order], data.inputs(data.images_test), data.y_test


def initial_params():
    from cnnfruit.nn.architecture import Architecture, init_parameters
    from cnnfruit.data.splits import generators

    init_rng, _, _ = generators(SEED)
    return init_parameters(Architecture(), init_rng, scheme="he")  # He-normal everywhere, whatever the default


def peak_mib():
    """This process's peak resident memory (VmHWM) since the last reset_peak()."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------
# (a) cnnfruit


class Cnnfruit:
    name = "cnnfruit"

    def __init__(self, params, optimizer="sgd"):
        from cnnfruit.nn.architecture import Architecture
        from cnnfruit.nn.network import Network
        from cnnfruit.nn.optimizers import make_optimizer
        from cnnfruit.threads import configure_threads

        configure_threads()  # as the command line does: Numba's workqueue layer, BLAS on one thread
        self.network = Network(Architecture(), {k: v.copy() for k, v in params.items()})
        settings = dict(OPTIMIZER_SETTINGS[optimizer])
        if "betas" in settings:
            settings["beta1"], settings["beta2"] = settings.pop("betas")
        self.optimizer = make_optimizer(optimizer, self.network.params, **settings)

    def step(self, x, y):
        """What TrainingLoop.run_epoch does per step, with the same fused-or-not choice."""
        net = self.network
        net.forward(x)
        net.loss(y)
        net.backward_step(self.optimizer)

    def infer(self, x):
        return self.network.predict_proba(x, batch=INFER_BATCH)

    def params(self):
        return self.network.params


# ----------------------------------------------------------------------------------------------
# (b) PyTorch


class Torch:
    name = "torch"
    threads = None  # as many as numba uses
    foreach = None  # PyTorch's default

    def __init__(self, params, optimizer="sgd"):
        import torch

        torch.set_num_threads(self.threads or numba_threads())
        self.torch = torch
        nn = torch.nn
        from torch_train import build_model  # the network of cnnfruit's Architecture, its weights copied in

        from cnnfruit.nn.architecture import Architecture

        self.model = build_model(torch, Architecture(), params)
        self.loss = nn.CrossEntropyLoss(reduction="sum")
        settings = OPTIMIZER_SETTINGS[optimizer]
        rule = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self.optimizer = rule(self.model.parameters(), **settings, foreach=self.foreach)

    def step(self, x, y):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=False)
        loss = self.loss(self.model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        self.optimizer.step()

    def infer(self, x):
        torch = self.torch
        with torch.no_grad():
            return np.concatenate([torch.softmax(self.model(torch.from_numpy(x[start:start + INFER_BATCH])), dim=1).numpy()
                                   for start in range(0, len(x), INFER_BATCH)])

    def params(self):
        from torch_train import model_parameters

        from cnnfruit.nn.architecture import Architecture

        return model_parameters(self.torch, Architecture(), self.model)


class TorchOneThread(Torch):
    """PyTorch on one thread: on a loaded machine its OpenMP threads can cost more than they give."""

    name = "torch-1t"
    threads = 1


class TorchForeach(Torch):
    """PyTorch with foreach=True: the multi-tensor optimizer step (its CPU default is a loop)."""

    name = "torch-foreach"
    foreach = True


# ----------------------------------------------------------------------------------------------
# (c) plain numpy: im2col for the conv, matmul for everything else


class Numpy:
    name = "numpy"

    def __init__(self, params, optimizer="sgd"):
        if optimizer != "sgd":
            raise ValueError("the numpy implementation has plain SGD only")
        self.p = {k: v.copy() for k, v in params.items()}
        self.layers = sum(name.endswith("_w") for name in params) - 1  # the dense layers

    def _forward(self, x):
        p = self.p
        N = len(x)
        K, C, S, _ = p["conv_w"].shape
        windows = np.lib.stride_tricks.sliding_window_view(x, (S, S), axis=(2, 3))  # N C P P S S
        P = windows.shape[2]
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(N * P * P, C * S * S)
        conv = cols @ p["conv_w"].reshape(K, -1).T + p["conv_b"]  # (N P P, K)
        conv = np.maximum(conv, 0).reshape(N, P, P, K).transpose(0, 3, 1, 2)
        acts = [conv.reshape(N, -1)]
        layers = self.layers
        for layer in range(layers):
            out = acts[-1] @ p[f"dense{layer}_w"] + p[f"dense{layer}_b"]
            acts.append(np.maximum(out, 0) if layer < layers - 1 else out)
        return cols, acts

    def step(self, x, y):
        p = self.p
        cols, acts = self._forward(x)
        logits = acts[-1]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        dout = exp / exp.sum(axis=1, keepdims=True)
        dout[np.arange(len(y)), y] -= 1
        grads = {}
        for layer in reversed(range(self.layers)):
            grads[f"dense{layer}_w"] = acts[layer].T @ dout
            grads[f"dense{layer}_b"] = dout.sum(axis=0)
            dout = (dout @ p[f"dense{layer}_w"].T) * (acts[layer] > 0)
        K = p["conv_w"].shape[0]
        dconv = dout.reshape(len(x), K, -1).transpose(0, 2, 1).reshape(-1, K)  # (N P P, K)
        grads["conv_w"] = (dconv.T @ cols).reshape(p["conv_w"].shape)
        grads["conv_b"] = dconv.sum(axis=0)
        for name, grad in grads.items():
            p[name] -= np.float32(LR) * grad

    def infer(self, x):
        logits = self._forward(x)[1][-1]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def params(self):
        return self.p


IMPLEMENTATIONS = {"cnnfruit": Cnnfruit, "torch": Torch, "torch-1t": TorchOneThread, "torch-foreach": TorchForeach,
                   "numpy": Numpy}


# ----------------------------------------------------------------------------------------------
# the deep stack: the VGG-style network of docs/layers.md, on 32 x 32 colour photos, Adam 1e-3 on
# the mean loss (PyTorch's recipe), from the same PyTorch-style initial weights


STACK = "conv32x3 same, conv32x3 same, maxpool2, conv64x3 same, conv64x3 same, maxpool2, dense256"
STACK_CLASSES = 10
STACK_LR = 1e-3
CIFAR = os.path.join(ROOT, "..", "shared", "cifar-10-sample")
# --check's stack: every layer kind and both paddings, odd and even kernels, pools of 2 and 3
CHECK_STACK = "conv8x3 same, conv32x3 same, maxpool2, conv8x4 same, conv12x5, maxpool3, dense32"


def stack_arch(layers=STACK):
    from cnnfruit.nn.architecture import Architecture

    return Architecture(in_channels=3, layers=layers, classes=STACK_CLASSES)


def stack_data(images=10000):
    """(x (N, 3, 32, 32) standardised float32, labels): the CIFAR-10 sample's training photos in a
    seeded order when they are beside the checkout, else as many random images."""
    rng = np.random.default_rng(SEED)
    if os.path.isdir(CIFAR):
        from cnnfruit.data.datasets import read_image_folder
        from cnnfruit.data.preprocess import to_inputs

        train = read_image_folder(CIFAR).train
        order = rng.permutation(len(train.labels))
        return to_inputs(train.images[order], "rgb", "standardize"), train.labels[order], "the CIFAR-10 sample"
    x = rng.standard_normal((images, 3, 32, 32)).astype(np.float32)
    return x, rng.integers(0, STACK_CLASSES, images), "random images (no CIFAR-10 sample beside the checkout)"


def stack_params(arch, dtype=np.float32):
    from cnnfruit.nn.architecture import init_parameters

    return init_parameters(arch, np.random.default_rng(SEED), dtype=dtype, scheme="torch")


class CnnfruitStack:
    """cnnfruit's training step on the stack, as Trainer.run_epoch takes it with --loss-reduction mean."""

    def __init__(self, arch, params):
        from cnnfruit.nn.network import Network
        from cnnfruit.nn.optimizers import make_optimizer
        from cnnfruit.threads import configure_threads

        configure_threads()
        self.network = Network(arch, {k: v.copy() for k, v in params.items()})
        self.optimizer = make_optimizer("adam", self.network.params, lr=STACK_LR)

    def step(self, x, y):
        net = self.network
        net.forward(x)
        net.loss(y)
        net.dlogits[...] *= net.dtype.type(1 / len(y))
        net.backward_step(self.optimizer)

    def gradients(self, x, y):
        """The summed loss's gradient of every parameter, and of the input as "input"."""
        net = self.network
        net.forward(x)
        net.loss(y)
        grads = {k: v.copy() for k, v in net.backward().items()}
        grads["input"] = net.input_gradient(net.dlogits.copy())
        return grads


class TorchStack:
    threads = None

    def __init__(self, arch, params):
        import torch
        from torch_train import build_model

        torch.set_num_threads(self.threads or numba_threads())
        self.torch, self.arch = torch, arch
        self.model = build_model(torch, arch, params)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=STACK_LR)
        self.loss = torch.nn.CrossEntropyLoss()

    def step(self, x, y):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(self.model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        self.optimizer.step()

    def gradients(self, x, y):
        from torch_train import model_parameters

        torch = self.torch
        self.model.zero_grad(set_to_none=True)
        inputs = torch.from_numpy(x.copy()).requires_grad_()
        torch.nn.CrossEntropyLoss(reduction="sum")(self.model(inputs), torch.from_numpy(y)).backward()
        return {**model_parameters(torch, self.arch, self.model, gradients=True), "input": inputs.grad.numpy()}


class TorchStackOneThread(TorchStack):
    threads = 1


STACK_IMPLEMENTATIONS = {"cnnfruit": CnnfruitStack, "torch": TorchStack, "torch-1t": TorchStackOneThread}


def check_stack_agreement():
    """One step's gradients of a stack with every layer kind: cnnfruit and PyTorch in float32 against
    cnnfruit in float64; they agree when their distance is of the size of float32's own error."""
    import torch  # noqa: F401  (a clear ImportError if PyTorch is missing)

    arch = stack_arch(CHECK_STACK)
    params = stack_params(arch)
    x, y, _ = stack_data(16)
    x, y = x[:16], y[:16]
    ours = CnnfruitStack(arch, params).gradients(x, y)
    theirs = TorchStackOneThread(arch, params).gradients(x, y)
    exact = CnnfruitStack(arch, {k: v.astype(np.float64) for k, v in params.items()}).gradients(x.astype(np.float64), y)
    lines = []
    kinds = {unit.name: unit for unit in arch.units()}
    for name in ours:
        unit = kinds.get(name.rsplit("_", 1)[0])
        scale = np.abs(exact[name]).max()
        noise = max(np.abs(ours[name] - exact[name]).max(), np.abs(theirs[name] - exact[name]).max()) / scale
        apart = np.abs(ours[name] - theirs[name]).max() / scale
        verdict = "ok" if apart <= 2 * noise + 1e-7 else "DIFFERENT"
        if unit is None:
            what = "input, through all"
        else:
            what = f"{unit.kind} {unit.spec}" + (" (logits)" if getattr(unit, "logits", False) else "")
            what += " (winograd)" if unit.kind == "conv" and unit.runs_as == "winograd" else ""
        lines.append(f"  stack {name:10s} {what:35s} |cnnfruit - torch| {apart:.1e}, float32 noise {noise:.1e} "
                     f"(of the largest gradient): {verdict}")
    return lines


def numba_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


# ----------------------------------------------------------------------------------------------
# a worker process: one implementation, commands as JSON lines on stdin, answers on stdout


def worker(name):
    x, y, x_test, _ = load_data()
    params = initial_params()
    impl, row, stack = None, None, None
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "train":
            if (command["batch"], command["optimizer"]) != row:  # a fresh model per row, from the same weights
                reset_peak()
                row, impl = (command["batch"], command["optimizer"]), IMPLEMENTATIONS[name](params, command["optimizer"])
                batch = command["batch"]
            steps = max(1, command["images"] // batch)
            started, cpu = time.perf_counter(), time.process_time()
            for s in range(steps):
                start = (s * batch) % (len(y) - batch + 1)
                impl.step(x[start:start + batch], y[start:start + batch])
            seconds = time.perf_counter() - started
            answer = {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "images": steps * batch,
                      "peak_mib": peak_mib()}
        elif command["do"] == "infer":
            if row != "infer":  # one model for every inference command, warmed up once
                impl, row = IMPLEMENTATIONS[name](params), "infer"
                impl.infer(x_test)
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(command["passes"]):
                impl.infer(x_test)
            answer = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
                      "images": command["passes"] * len(x_test)}
        elif command["do"] == "describe":
            from cnnfruit.nn.gemm import products

            answer = {"products": products().describe()}
        elif command["do"] == "stack":
            if ("stack", command["batch"]) != row:  # a fresh model per row, from the same weights
                if stack is None:
                    stack = stack_data()
                    arch = stack_arch()
                    start_params = stack_params(arch)
                row, batch = ("stack", command["batch"]), command["batch"]
                impl = STACK_IMPLEMENTATIONS[name](arch, start_params)
            sx, sy, _ = stack
            steps = max(1, command["images"] // batch)
            started = time.perf_counter()
            for s in range(steps):
                start = (s * batch) % (len(sy) - batch + 1)
                impl.step(sx[start:start + batch], sy[start:start + batch])
            answer = {"seconds": time.perf_counter() - started, "images": steps * batch}
        elif command["do"] == "check":
            impl, row = IMPLEMENTATIONS[name](params, command["optimizer"]), None
            for s in range(command["steps"]):
                b = command["batch"]
                impl.step(x[s * b:(s + 1) * b], y[s * b:(s + 1) * b])
            path = command["path"]
            np.savez(path, **{k: np.asarray(v) for k, v in impl.params().items()})
            answer = {"path": path}
        print(json.dumps(answer), flush=True)


class Worker:
    def __init__(self, name, threads=None):
        self.name = name
        env = dict(os.environ)
        if name == "cnnfruit":  # BLAS on one thread, as cnnfruit/threads.py holds it
            env.setdefault("OPENBLAS_NUM_THREADS", "1")
        if threads is not None:
            env["NUMBA_NUM_THREADS"] = str(threads)
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )

    def ask(self, **command):
        time.sleep(SETTLE_SECONDS)
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker stopped")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


# ----------------------------------------------------------------------------------------------
# measurements made by the parent


def sgemm_peak(size=2048, repeats=5):
    """GFLOP/s of numpy's float32 matmul of two size x size matrices (best of repeats), with BLAS on
    as many threads as the implementations use: the stack's check (configure_threads) leaves this
    process's BLAS on one thread, which would halve the peak and double every '% peak'."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = a.T.copy()
    out = np.empty_like(a)
    with threadpool_limits(limits=numba_threads(), user_api="blas"):
        np.matmul(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def row_workers(workers, optimizer):
    """The workers that take part in a row: numpy has plain SGD only, torch-foreach no SGD row."""
    skip = {"numpy"} if optimizer != "sgd" else {"torch-foreach"}
    return {name: w for name, w in workers.items() if name not in skip}


def run_cli(args, env=None):
    """Wall seconds and peak RSS (MiB) of `python -m cnnfruit ARGS` in a fresh process."""
    return run_process([sys.executable, "-m", "cnnfruit", *args], ROOT, env)


PROCESS_ROWS = ((3, 1), (10, 32))  # (epochs, batch size) of the whole-process comparison


# Starts a command and prints its wall seconds, peak RSS in KiB and exit status. Linux keeps, in
# a process's peak RSS, the size of the process it was exec'd from, so a command started
# straight from this process (1 GB once the deep stack's photos are loaded) would report at
# least that; started from this small launcher, it reports its own.
LAUNCHER = """import os, subprocess, sys, time
started = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, status)
"""


def run_process(command, cwd=None, env=None):
    """Wall seconds and peak RSS (MiB) of one fresh process (its output thrown away)."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], cwd=cwd, env=env, capture_output=True,
                          text=True)
    fields = done.stdout.split()  # the launcher's one line; the command's own output went nowhere
    if done.returncode != 0 or len(fields) != 3 or fields[2] != "0":
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-500:]}")
    return float(fields[0]), int(fields[1]) / 1024


def compare_processes(epochs, batch, runs, tmp, with_torch):
    """`cnnfruit train` and the plain PyTorch script in turn; medians and the ratio pair by pair."""
    flags = ["--epochs", str(epochs), "--batch-size", str(batch), "--lr", str(LR), "--seed", str(SEED)]
    ours, theirs = [], []
    for run in range(runs):
        out = os.path.join(tmp, f"process-{epochs}-{batch}-{run}")
        ours.append(run_process([sys.executable, "-m", "cnnfruit", "train", *flags, "-q", "--out", out + "-c"], ROOT))
        if with_torch:
            script = os.path.join(ROOT, "benchmarks", "torch_train.py")
            theirs.append(run_process([sys.executable, script, *flags, "--out", out + "-t"], ROOT))
    wall = statistics.median(s for s, _ in ours)
    line = f"  {epochs} epochs, batch {batch}: cnnfruit {wall:.1f} s wall ({max(m for _, m in ours):.0f} MiB)"
    if with_torch:
        ratio = statistics.median(t[0] / c[0] for c, t in zip(ours, theirs))
        line += (f", PyTorch script {statistics.median(s for s, _ in theirs):.1f} s ({max(m for _, m in theirs):.0f} "
                 f"MiB): {ratio:.2f}x (median of the pairs' ratios; runs {', '.join(f'{c:.1f}/{t:.1f}' for (c, _), (t, _) in zip(ours, theirs))})")
    print(line, flush=True)


def thread_scaling(batch, repeats, images):
    """cnnfruit at `batch` on 1 thread and on numba_threads(), alternating: (medians, median of pair ratios)."""
    counts = sorted({1, numba_threads()})
    workers = {threads: Worker("cnnfruit", threads) for threads in counts}
    times = {threads: [] for threads in counts}
    for w in workers.values():
        w.ask(do="train", batch=batch, optimizer="sgd", images=2 * batch)
    for _ in range(repeats):
        for threads, w in workers.items():
            answer = w.ask(do="train", batch=batch, optimizer="sgd", images=images)
            times[threads].append(answer["seconds"] / answer["images"])
    for w in workers.values():
        w.close()
    medians = {threads: statistics.median(t) for threads, t in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times[1], times[counts[-1]]))
    return medians, ratio


def python_seconds(code, runs=5):
    """Best wall time of `python -c code` in a fresh process, over runs."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def help_start_up():
    """What `cnnfruit --help` imports of numpy and numba, and its time against `import numba`'s."""
    code = ("import sys; from cnnfruit.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n"
            "print('numpy' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    numpy_loaded, numba_loaded = out.stdout.split()[-2:]
    help_s = python_seconds(code)
    numba_s = python_seconds("import numba")
    bare = python_seconds("pass")
    return (f"`cnnfruit --help` imports numpy: {numpy_loaded}, numba: {numba_loaded}; best of 5 wall: --help "
            f"{help_s:.3f} s, `import numba` {numba_s:.3f} s, bare python {bare:.3f} s; --help beyond bare python "
            f"is {(help_s - bare) / max(numba_s - bare, 1e-9):.2f} of `import numba`'s")


# Issue 19's VGG-style stack on 32 x 32 colour images, 10 classes.
VGG_SPEC = "conv32x3 same, conv32x3 same, maxpool2, conv64x3 same, conv64x3 same, maxpool2, dense256"


def unit_plan(unit, batch, fusable):
    """{"forward": (how, units), "backward": (how, units), "multiply_adds": n} of one layer unit."""
    from cnnfruit.nn import dispatch
    from cnnfruit.nn.layers.conv_tiles import backward_tiles

    if unit.kind == "dense":
        return dispatch.dense_plan(batch, unit.fan_in, unit.units, fusable)
    if unit.kind == "conv":
        C, H, _ = unit.in_shape
        if unit.direct:
            return dispatch.conv_plan(batch, C, H, unit.kernels, unit.size)
        K, P, Q = unit.out_shape
        how = f"{unit.runs_as} tiles"
        return {"forward": (how, batch), "backward": (how, backward_tiles(batch)),
                "multiply_adds": batch * K * P * Q * C * unit.size**2}
    return None  # pooling and dropout: elementwise, no product


def tile_table(batches=(1, 8, 32, 128, 256)):
    """Units of work per product for the threads, from the shapes: the report's network and the VGG stack."""
    from cnnfruit import layerspec
    from cnnfruit.nn.architecture import Architecture

    networks = (("report", Architecture()),
                ("vgg", Architecture(in_channels=3, layers=layerspec.parse(VGG_SPEC), classes=10)))
    lines = [f"{'layer':>12} {'input':>12} {'batch':>5} {'multiply-adds':>13}  {'forward':>16}  {'backward (SGD)':>20}  "
             f"{'backward (Adam)':>20}"]
    cell = lambda how_units: f"{how_units[1]:>4} {how_units[0]}"  # noqa: E731
    for network, arch in networks:
        for unit in arch.units():
            for batch in batches:
                sgd, adam = unit_plan(unit, batch, True), unit_plan(unit, batch, False)
                if sgd is None:
                    continue
                lines.append(f"{network + ' ' + unit.name:>12} {'x'.join(map(str, unit.in_shape)):>12} {batch:>5} "
                             f"{sgd['multiply_adds']:>13,}  {cell(sgd['forward']):>16}  {cell(sgd['backward']):>20}  "
                             f"{cell(adam['backward']):>20}")
    return "\n".join(lines)


def check_agreement(workers, tmp, optimizer="sgd"):
    """Each implementation's weights after 3 steps at batch 4, against cnnfruit's."""
    results = {}
    for name, w in workers.items():
        path = os.path.join(tmp, f"check-{name}.npz")
        w.ask(do="check", steps=3, batch=4, path=path, optimizer=optimizer)
        with np.load(path, allow_pickle=False) as saved:
            results[name] = {k: saved[k] for k in saved.files}
    lines = []
    base = results["cnnfruit"]
    start = initial_params()
    for name, params in results.items():
        if name == "cnnfruit":
            continue
        worst = max(
            float(np.abs(params[k] - base[k]).max() / max(np.abs(base[k] - start[k]).max(), 1e-30)) for k in base
        )
        lines.append(f"  {optimizer}: {name} vs cnnfruit after 3 steps of batch 4: largest weight difference = "
                     f"{worst:.1e} of the largest weight change")
    return lines


def time_stack(workers, batches, args, peak, names):
    """The deep stack's rows: cnnfruit and PyTorch taking turns, seconds per 10,000-image epoch."""
    arch = stack_arch()
    flops = arch.flops_per_image()
    active = {name: workers[name] for name in ("cnnfruit", "torch", "torch-1t") if name in names}
    source = stack_data(16)[2]
    print(f"\ndeep stack: {arch.describe()}, {flops / 1e6:.1f} MFLOP per image and step; Adam {STACK_LR:g} on "
          f"the mean loss, PyTorch's initialisation; {source}; {args.stack_images} images per timed run, median "
          f"of {args.repeats} alternating runs, scaled to a 10000-image epoch; GFLOP/s and % peak count a direct "
          f"convolution's FLOPs for every implementation (cnnfruit's Winograd layers multiply 2.25x less); "
          f"uptime: {uptime()}")
    header = f"{'batch':>5} {'impl':>9} {'s/epoch':>8} {'img/s':>7} {'vs torch':>8} {'vs best':>8} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    for batch in batches:
        times = {name: [] for name in active}
        for w in active.values():  # warm-up: compilation, first touch of the buffers
            w.ask(do="stack", batch=batch, images=2 * batch)
        for _ in range(args.repeats):
            for name, w in active.items():
                answer = w.ask(do="stack", batch=batch, images=args.stack_images)
                times[name].append(answer["seconds"] / answer["images"] * 10000)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name, epoch in medians.items():
            torch_epoch = medians.get("torch")
            best = min((medians[t] for t in ("torch", "torch-1t") if t in medians), default=None)
            speedup = f"{torch_epoch / epoch:7.2f}x" if torch_epoch else f"{'n/a':>8}"
            over_best = f"{best / epoch:7.2f}x" if best else f"{'n/a':>8}"
            gflops = flops * 10000 / epoch / 1e9
            print(f"{batch:>5} {name:>9} {epoch:8.2f} {10000 / epoch:7.0f} {speedup} {over_best} {gflops:8.1f} "
                  f"{100 * gflops / peak:6.1f}%   runs {', '.join(f'{t:.1f}' for t in times[name])}")
    print(f"uptime after: {uptime()}")


def uptime():
    """The load averages: the machine is shared, and every timing is read beside them."""
    try:
        with open("/proc/loadavg") as f:
            return "load " + " ".join(f.read().split()[:3])
    except OSError:
        return "load unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32,128", help="comma-separated batch sizes (plain SGD)")
    parser.add_argument("--optimizer-rows", default="adam:32,momentum:32",
                        help="comma-separated OPTIMIZER:BATCH rows besides plain SGD ('' for none)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    parser.add_argument("--images", type=int, default=1024, help="images trained on per timed run")
    parser.add_argument("--eval-runs", type=int, default=3, help="runs of `cnnfruit eval` per cache state")
    parser.add_argument("--process-runs", type=int, default=3, help="pairs of whole-process runs per row")
    parser.add_argument("--check", action="store_true", help="first check that the implementations agree")
    parser.add_argument("--tiles", action="store_true", help="print the units of work per product, and stop")
    parser.add_argument("--stack-batches", default="32,64",
                        help="comma-separated batch sizes of the deep stack's rows ('' for none)")
    parser.add_argument("--stack-images", type=int, default=10000,
                        help="images per timed run of the deep stack (10000: a whole epoch of the CIFAR-10 sample)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    if args.tiles:
        print("Units of work each product offers the threads (tiles, prange iterations or calls), from the shapes;")
        print("the same at any thread count. backward: the input and weight gradients with the update fused in.")
        return print(tile_table())

    from cnnfruit.nn.architecture import Architecture
    from cnnfruit.nn.gemm import products

    rows_wanted = [("sgd", int(b)) for b in args.batches.split(",") if b]
    rows_wanted += [(o, int(b)) for o, b in (r.split(":") for r in args.optimizer_rows.split(",") if r)]
    flops = Architecture().flops_per_image()
    names = ["cnnfruit", "torch", "torch-1t", "torch-foreach", "numpy"]
    try:
        import torch
        torch_note = f"torch {torch.__version__}, {numba_threads()} threads"
    except ImportError:
        for name in ("torch", "torch-1t", "torch-foreach"):
            names.remove(name)
        torch_note = "PyTorch is not installed (pip install .[bench]): its columns are left out"
    print(f"cnnfruit benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, "
          f"numba threads {numba_threads()}, numpy {np.__version__}; {torch_note}")
    arch, epoch_images = Architecture(), len(load_data()[1])
    print(f"network {arch.describe()}, "
          f"{flops / 1e6:.1f} MFLOP per image and step; {args.images} images per timed run, median of "
          f"{args.repeats}, scaled to a {epoch_images}-image epoch")
    print(f"cnnfruit's {products().describe()}")

    peak = sgemm_peak()  # before the workers start: each loads its libraries and data on both cores
    workers = {name: Worker(name) for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        if args.check:
            print("agreement:")
            for optimizer in sorted({o for o, _ in rows_wanted}):
                print("\n".join(check_agreement(row_workers(workers, optimizer), tmp, optimizer)))
            if "torch" in names:
                print("\n".join(check_stack_agreement()))
        print(f"sgemm peak (numpy float32 matmul 2048x2048, best of 5): {peak:.1f} GFLOP/s")
        rows = []
        for optimizer, batch in rows_wanted:
            active = row_workers(workers, optimizer)
            times = {name: [] for name in active}
            mem = {}
            for name, w in active.items():  # warm-up: compilation, first touch of the buffers
                w.ask(do="train", batch=batch, optimizer=optimizer, images=min(args.images, 2 * batch))
            for _ in range(args.repeats):
                for name, w in active.items():
                    answer = w.ask(do="train", batch=batch, optimizer=optimizer, images=args.images)
                    times[name].append(answer["seconds"] / answer["images"] * epoch_images)
                    mem[name] = answer["peak_mib"]
            for name in active:
                epoch = statistics.median(times[name])
                rows.append((optimizer, batch, name, epoch, mem[name], times))
        print()
        header = (f"{'optimizer':>9} {'batch':>5} {'impl':>13} {'s/epoch':>8} {'img/s':>8} {'vs torch':>8} {'vs best':>8} "
                  f"{'GFLOP/s':>8} {'% peak':>7} {'peak MiB':>9}")
        print(header)
        print("-" * len(header))
        for optimizer, batch, name, epoch, mib, times in rows:
            torch_epoch = statistics.median(times["torch"]) if "torch" in times else None
            rivals = [t for t in ("torch", "torch-1t", "torch-foreach") if t in times]
            best = min(statistics.median(times[t]) for t in rivals) if torch_epoch else None
            speedup = f"{torch_epoch / epoch:7.2f}x" if torch_epoch else f"{'n/a':>8}"
            over_best = f"{best / epoch:7.2f}x" if best else f"{'n/a':>8}"
            gflops = flops * epoch_images / epoch / 1e9
            print(f"{optimizer:>9} {batch:>5} {name:>13} {epoch:8.3f} {epoch_images / epoch:8.0f} {speedup} {over_best} "
                  f"{gflops:8.2f} {100 * gflops / peak:6.1f}% {mib:9.0f}")

        stack_batches = [int(b) for b in args.stack_batches.split(",") if b]
        if stack_batches:
            time_stack(workers, stack_batches, args, peak, names)

        print(f"\ninference on the test split (496 images, batches of {INFER_BATCH}), {INFER_PASSES} passes a run, "
              f"median of {max(3, args.repeats)} alternating runs:")
        names = [name for name in names if name != "torch-foreach"]  # the same forward as torch
        rates = {name: [] for name in names}
        for _ in range(max(3, args.repeats)):
            for name in names:
                answer = workers[name].ask(do="infer", passes=INFER_PASSES)
                rates[name].append(answer["images"] / answer["seconds"])
        for name in names:
            rate = statistics.median(rates[name])
            ratio = f"  {rate / statistics.median(rates['torch']):5.2f}x torch" if "torch" in rates else ""
            print(f"  {name:>9}: {rate:10.0f} images/s{ratio}")
        print(f"  cnnfruit's {workers['cnnfruit'].ask(do='describe')['products']}")
        for w in workers.values():
            w.close()

        batch = max((b for o, b in rows_wanted if o == "sgd"), default=128)
        medians, ratio = thread_scaling(batch, max(3, args.repeats), args.images)
        print(f"\nthreads: cnnfruit, SGD at batch {batch}, {max(3, args.repeats)} alternating runs of "
              f"{args.images} images: " + ", ".join(f"{t} thread{'s' * (t > 1)} {1e6 * m:.0f} us/image"
                                                   for t, m in medians.items())
              + f"; {ratio:.2f}x (median of the pairs' ratios)")

        print(f"\nwhole processes, `cnnfruit train` against benchmarks/torch_train.py (the same data, network, "
              f"starting weights and per-epoch work: train, validate, save), alternating, {args.process_runs} pairs:")
        for epochs, batch in PROCESS_ROWS:
            compare_processes(epochs, batch, args.process_runs, tmp, "torch" in names)
        model_dir = os.path.join(tmp, "run")
        run_cli(["train", "--epochs", "1", "-q", "--out", model_dir])
        print("\nthe command line (fresh processes, wall time including start-up):")
        model = os.path.join(model_dir, "model.npz")
        run_cli(["eval", model])  # warms the default cache
        warm = [run_cli(["eval", model])[0] for _ in range(args.eval_runs)]
        cold = []
        for _ in range(args.eval_runs):
            with tempfile.TemporaryDirectory() as cache:
                cold.append(run_cli(["eval", model], env={**os.environ, "NUMBA_CACHE_DIR": cache})[0])
        print(f"  cnnfruit eval MODEL, warm compile cache: median {statistics.median(warm):.2f} s wall "
              f"({', '.join(f'{s:.2f}' for s in warm)})")
        print(f"  cnnfruit eval MODEL, cold compile cache (empty NUMBA_CACHE_DIR): median "
              f"{statistics.median(cold):.2f} s wall ({', '.join(f'{s:.2f}' for s in cold)})")
        print(f"  {help_start_up()}")


if __name__ == "__main__":
    main()
