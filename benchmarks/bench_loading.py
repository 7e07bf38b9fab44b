"""Time read_image_folder on a big photo tree: cold (the library's worker processes, and a thread
pool for comparison), listing, cached, and optionally the code of another checkout ("before").

    python benchmarks/make_photo_tree.py /work/shared/fruits-360 /work/photo-tree
    python benchmarks/bench_loading.py /work/photo-tree --runs 5 --drop-caches --before /tmp/old-checkout

Every run is a fresh child process, so each figure includes nothing cached in Python; its peak
memory is the child's own ru_maxrss (os.wait4, its waited-for workers included), its CPU time
the child's user + system time, its workers' included. "load s" is the time read_image_folder
(or the thread pool) took inside the child, "process s" the child's whole life, interpreter
start and imports included. The two cold cases run in turn (library, threads, library, ...) and
their ratio is taken pair by pair, so that a machine whose speed drifts slows both alike. Cases:

  cold, processes    the library: cache emptied before each run; one worker process per CPU
  cold, threads      the same files decoded by load_image on a thread pool (two threads per CPU),
                     chunked like the library, into one preallocated array: the alternative
  listing            finding the layout: os.scandir of every folder and a stat of every file
  cached             the library, every file unchanged since the previous load
  before             read_image_folder of the checkout given by --before (serial, no cache)

With --drop-caches (root only) every case also runs with the OS page cache dropped before each
run, so that the photos (or the cache files) come from disk, as after a reboot. The median of the
runs is shown; the machine's load average before and after is printed, since other work on a
shared machine slows every figure.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 64


# ---------------------------------------------------------------------------------------------
# in the child


def child(mode, root, cache_dir, workers):
    import inspect

    import numpy as np

    cache_dir = False if cache_dir == "off" else cache_dir
    started = time.perf_counter()
    if mode == "listing":
        from cnnfruit.data.datasets import find_layout

        layout = find_layout(root)
        files = sum(len(files) for part in layout.parts.values() for _, files in part)
        report = {"files": files, "decoded": 0, "cached": 0}
    elif mode == "threads":
        files = decode_on_threads(root, workers)
        report = {"files": files, "decoded": files, "cached": 0}
    else:
        from cnnfruit.data.datasets import read_image_folder

        if "cache_dir" in inspect.signature(read_image_folder).parameters:
            dataset = read_image_folder(root, cache_dir=cache_dir, workers=workers)
            stats = dataset.loading
            report = {"files": stats.files, "decoded": stats.decoded, "cached": stats.cached}
        else:  # the code before the cache: returns (dataset, skipped)
            dataset, _ = read_image_folder(root)
            files = len(dataset.train) + len(dataset.test)
            report = {"files": files, "decoded": files, "cached": 0}
        assert dataset.train.images.dtype == np.uint8
    report["seconds"] = time.perf_counter() - started
    print(json.dumps(report))


def decode_on_threads(root, workers):
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from cnnfruit.data.datasets import find_layout
    from cnnfruit.data.preprocess import IMAGE_SIZE, load_image

    layout = find_layout(root)
    paths = [os.path.join(folder, f.name) for part in layout.parts.values() for folder, files in part for f in files]
    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)

    def decode(start):
        for i in range(start, min(start + CHUNK, len(paths))):
            images[i] = load_image(paths[i])

    with ThreadPoolExecutor(workers or 2 * os.cpu_count()) as pool:
        list(pool.map(decode, range(0, len(paths), CHUNK)))
    return len(paths)


# ---------------------------------------------------------------------------------------------
# in the parent


def drop_page_cache():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run_child(mode, root, cache_dir, workers, code):
    """One child: (its report, whole-process seconds, CPU seconds, peak RSS in MB)."""
    env = {**os.environ, "PYTHONPATH": code}
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, root, "--cache-dir", cache_dir]
    command += ["--workers", str(workers)] if workers else []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=tempfile.gettempdir())
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{mode} child failed with exit code {process.returncode}")
    return json.loads(output), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_once(label, mode, args, cache_dir, code, before=None):
    if before:
        before()
    run = run_child(mode, args.root, cache_dir, args.workers, code)
    report = run[0]
    print(f"  {label}: {report['seconds']:.2f} s in load, {run[1]:.2f} s process, "
          f"{report['decoded']} decoded, {report['cached']} from cache", flush=True)
    return run


def summary(label, runs):
    return {"case": label, "runs": len(runs), "files": runs[0][0]["files"],
            "load": statistics.median(r[0]["seconds"] for r in runs),
            "process": statistics.median(r[1] for r in runs), "cpu": statistics.median(r[2] for r in runs),
            "rss": statistics.median(r[3] for r in runs)}


def measure(label, mode, args, cache_dir, code, before_each=None):
    return summary(label, [run_once(label, mode, args, cache_dir, code, before_each) for _ in range(args.runs)])


def paired(labels, modes, args, cache_dir, befores):
    """Runs of two cases in turn (A B A B ...), so that a machine whose speed drifts slows both
    alike; returns both summaries and the per-pair ratios of A's load time to B's."""
    runs = ([], [])
    for _ in range(args.runs):
        for side in (0, 1):
            runs[side].append(run_once(labels[side], modes[side], args, cache_dir, REPO, befores[side]))
    ratios = [a[0]["seconds"] / b[0]["seconds"] for a, b in zip(*runs)]
    return summary(labels[0], runs[0]), summary(labels[1], runs[1]), ratios


def table(results):
    lines = [f"{'case':44} {'runs':>4} {'load s':>8} {'process s':>9} {'files/s':>8} {'CPU s':>7} {'peak MB':>8}"]
    for r in results:
        lines.append(f"{r['case']:44} {r['runs']:>4} {r['load']:>8.2f} {r['process']:>9.2f} "
                     f"{r['files'] / r['load']:>8.0f} {r['cpu']:>7.1f} {r['rss']:>8.0f}")
    return "\n".join(lines)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from PIL import __version__ as pillow

    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, Pillow {pillow}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the photo tree (benchmarks/make_photo_tree.py makes one)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case; the median is shown (default 3)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: the library's, one per CPU); threads (default: two per CPU)")
    parser.add_argument("--drop-caches", action="store_true", help="drop the OS page cache before cold runs (root)")
    parser.add_argument("--before", metavar="DIR", help="a folder holding another checkout's cnnfruit package")
    parser.add_argument("--out", metavar="FILE", help="also write the results here")
    parser.add_argument("--child", metavar="MODE", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)  # "off": no cache
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.root, args.cache_dir, args.workers)

    cache_dir = tempfile.mkdtemp(prefix="cnnfruit-bench-cache-")

    def empty_cache():
        shutil.rmtree(cache_dir)
        os.makedirs(cache_dir)

    def cold_and_dropped():
        empty_cache()
        drop_page_cache()

    pages = [("page cache warm", None)] + ([("page cache dropped", drop_page_cache)] if args.drop_caches else [])
    load_before = os.getloadavg()
    print(f"{machine()}; load average {load_before[0]:.2f} (1 min)", flush=True)
    results, ratios = [], []
    for page, drop in pages:
        library, threads, ratio = paired(
            (f"cold, processes: the library ({page})", f"cold, threads ({page})"), ("library", "threads"), args,
            cache_dir, (cold_and_dropped if drop else empty_cache, drop))
        results += [library, threads]
        ratios.append(f"cold threads / cold processes ({page}), per pair: median {1 / statistics.median(ratio):.2f} "
                      f"(min {1 / max(ratio):.2f}, max {1 / min(ratio):.2f})")
    for page, drop in pages:
        results.append(measure(f"listing: scandir + stat ({page})", "listing", args, cache_dir, REPO, drop))
    run_child("library", args.root, cache_dir, args.workers, REPO)  # fill the cache
    for page, drop in pages:
        results.append(measure(f"cached ({page})", "library", args, cache_dir, REPO, drop))
    if args.before:
        for page, drop in pages:
            results.append(measure(f"before: serial, no cache ({page})", "before", args, cache_dir,
                                   os.path.abspath(args.before), drop))
    shutil.rmtree(cache_dir)
    load_after = os.getloadavg()
    workers = f"{args.workers} workers" if args.workers else "default workers (processes: 1 per CPU; threads: 2 per CPU)"
    text = (f"read_image_folder on {args.root} ({results[0]['files']} files), {workers}, "
            f"{datetime.datetime.now():%Y-%m-%d %H:%M}\n{machine()}\n"
            f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
            f"after: {', '.join(f'{x:.2f}' for x in load_after)}\n"
            + (f"before = the cnnfruit package in {os.path.abspath(args.before)}\n" if args.before else "")
            + f"\n{table(results)}\n\n" + "\n".join(ratios) + "\n")
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
