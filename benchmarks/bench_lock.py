"""What threads.compute_lock costs: whole epochs and predictions with it and without, alternating.

    python benchmarks/bench_lock.py [--batches 1,8,32,128] [--repeats 5]

One process, the bench's network and data (the report's Architecture on the embedded photos, plain
SGD at lr 1e-6), configure_threads() as the command line calls it. Each row trains whole epochs
of the 1030 training images at one batch size, taking turns: an epoch with the lock around each
step, as the library runs it, then one with the lock replaced by a context that does nothing.
Inference predicts the 496 test images 8 times a run, the same way. Each cell is the median of
--repeats runs; wall and CPU (all threads) seconds are shown, since on a shared machine the wall
time moves with the other jobs.
"""
import argparse
import contextlib
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing


def timed(run):
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(run, modules, repeats):
    """{"lock": [(wall, cpu)], "none": [...]}: run() taking turns with and without the lock."""
    import cnnfruit.threads

    results = {"lock": [], "none": []}
    for _ in range(repeats):
        for mode in ("lock", "none"):
            lock = cnnfruit.threads.compute_lock if mode == "lock" else contextlib.nullcontext
            for module in modules:
                module.compute_lock = lock
            results[mode].append(timed(run))
    for module in modules:
        module.compute_lock = cnnfruit.threads.compute_lock
    return results


def row(name, results):
    med = {mode: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for mode, r in results.items()}
    (lw, lc), (nw, nc) = med["lock"], med["none"]
    print(f"{name:>14}  {lw:8.3f} {nw:8.3f} {100 * (lw / nw - 1):+7.1f}%   {lc:8.3f} {nc:8.3f} {100 * (lc / nc - 1):+7.1f}%",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import cnnfruit
    import cnnfruit.inference.classifier as classifier_module
    import cnnfruit.training.loop as loop_module
    from cnnfruit.training.loop import TrainingLoop

    cnnfruit.configure_threads()
    data = cnnfruit.load_embedded()
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.repeats}, lock and none taking turns")
    print(f"{'':>14}  {'wall s':>8} {'no lock':>8} {'cost':>8}   {'CPU s':>8} {'no lock':>8} {'cost':>8}")
    for batch in [int(b) for b in args.batches.split(",")]:
        config = cnnfruit.TrainConfig(lr=1e-6, batch_size=batch, epochs=1000, val_fraction=0, seed=0)
        loop = TrainingLoop.start(data, config)
        loop.run_epoch()  # warm: compiled kernels, buffers made
        row(f"epoch b{batch}", alternate(loop.run_epoch, [loop_module], args.repeats))
    clf = cnnfruit.Classifier(loop.network.arch, loop.network.params, data.class_names)
    images = data.test.images
    clf.predict_proba(images)
    row("predict 8x496", alternate(lambda: [clf.predict_proba(images) for _ in range(8)], [classifier_module],
                                   args.repeats))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
