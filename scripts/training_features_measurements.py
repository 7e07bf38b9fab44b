"""The measurement table of docs/training-features.md, to rerun on new code (e.g. another default init).

    python scripts/training_features_measurements.py OUT                  # every row, seeds 0 1 2
    python scripts/training_features_measurements.py OUT --seeds 0 1 2 3 4 --rows constant cosine-1e-3

Each run is `cnnfruit train` (the grey recipe plus the row's flags) in a fresh process, two at a
time (the machine has 2 cores); its folder and log go to OUT/<row>-s<seed>. A row's cell is the run's
`Test Accuracy:` line; runs already in OUT with a finished log are read, not run again.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

RECIPE = ["--optimizer", "adam", "--lr", "3e-4", "--normalize", "standardize", "--batch-size", "32", "--epochs", "8",
          "--augment", "flip"]
ROWS = {  # name: flags added to the recipe (a later --lr replaces the recipe's)
    "constant": [],
    "cosine": ["--lr-schedule", "cosine"],
    "onecycle": ["--lr-schedule", "onecycle"],
    "step": ["--lr-schedule", "step", "--lr-step-epochs", "3", "--lr-factor", "0.1"],
    "plateau": ["--lr-schedule", "plateau", "--lr-patience", "1", "--lr-factor", "0.1"],
    "weights-auto": ["--class-weights", "auto"],
    "dropout-0.2": ["--dropout", "0.2"],
    "dropout-0.3": ["--dropout", "0.3"],
    "dropout-0.5": ["--dropout", "0.5"],
    "smoothing-0.1": ["--label-smoothing", "0.1"],
    "constant-1e-3": ["--lr", "1e-3"],
    "cosine-1e-3": ["--lr-schedule", "cosine", "--lr", "1e-3"],
    "onecycle-1e-3": ["--lr-schedule", "onecycle", "--lr", "1e-3"],
    "step-1e-3": ["--lr-schedule", "step", "--lr-step-epochs", "3", "--lr-factor", "0.1", "--lr", "1e-3"],
    "plateau-1e-3": ["--lr-schedule", "plateau", "--lr-patience", "1", "--lr-factor", "0.1", "--lr", "1e-3"],
}
RESULT = re.compile(r"Test Accuracy: ([\d.]+)% \((\d+)/(\d+)\)")


def run(out, row, seed):
    """(percent text, right, total) of one run, training it unless OUT holds its finished log."""
    folder = os.path.join(out, f"{row}-s{seed}")
    log = folder + ".log"
    if os.path.exists(log):
        found = RESULT.search(open(log).read())
        if found:
            return found.group(1), int(found.group(2)), int(found.group(3))
    args = [sys.executable, "-m", "cnnfruit", "train", "-q", *RECIPE, *ROWS[row], "--seed", str(seed), "--out", folder]
    with open(log, "w") as f:
        subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, check=True)
    found = RESULT.search(open(log).read())
    return found.group(1), int(found.group(2)), int(found.group(3))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    with ThreadPoolExecutor(options.jobs) as pool:
        jobs = {(row, seed): pool.submit(run, options.out, row, seed) for row in options.rows for seed in options.seeds}
        results = {key: job.result() for key, job in jobs.items()}
    seeds = options.seeds
    print("| row | flags added to the grey recipe | " + " | ".join(f"seed {s}" for s in seeds) + " | median |")
    print("| --- | --- | " + "--- | " * len(seeds) + "--- |")
    for row in options.rows:
        cells = [results[row, s] for s in seeds]
        median = 100 * statistics.median(right / total for _, right, total in cells)
        print(f"| {row} | `{' '.join(ROWS[row])}` | " + " | ".join(f"{p}% ({r}/{t})" for p, r, t in cells)
              + f" | **{median:.1f}%** |")


if __name__ == "__main__":
    main()
