"""The measurements of docs/insight.md, to rerun on new code (e.g. another default initialisation).

    python scripts/insight_measurements.py lr report lr-seeds.png   # lr-find: 3 seeds x 2 ranges
    python scripts/insight_measurements.py lr grey lr-grey.png
    python scripts/insight_measurements.py tta runs/grey-s0/model.npz ...     # test accuracy by TTA mode
    python scripts/insight_measurements.py other OUT/unseen.txt OUT/three runs/three-s0/model.npz ...

The models come from `cnnfruit train` (docs/insight.md gives each command); the folders and the
list of unseen photos from scripts/build_other_class.py.
"""
import sys

import numpy as np

import cnnfruit
from cnnfruit.training.lr_finder import find_lr
from cnnfruit.plots import lr_sweep_figure, save_figure

RECIPES = {
    "report": ({}, "the report's recipe: sgd, batch 1, raw pixels"),
    "grey": (dict(optimizer="adam", normalize="standardize", batch_size=32, augment="flip"),
             "the grey recipe: adam, batch 32, standardize, flips"),
}
RANGES = ((1e-8, 1.0), (1e-10, 1e-2))
THRESHOLDS = (0.5, 0.9, 0.99)


def lr(recipe, picture):
    settings, words = RECIPES[recipe]
    data = cnnfruit.load_embedded()
    sweeps, labels = [], []
    print("| seed | range | steps | ended because | lowest loss at | steepest fall at | suggested |")
    print("|---|---|---|---|---|---|---|")
    for start, end in RANGES:
        for seed in (0, 1, 2):
            s = find_lr(data, cnnfruit.TrainConfig(seed=seed, **settings), start=start, end=end)
            g = s.suggestion
            print(f"| {seed} | {start:.0e} to {end:.0e} | {len(s.lrs)} | {s.stopped} | {g.minimum:.1e} | "
                  f"{g.steepest:.1e} | {g.low:.0e} to {g.high:.0e} |", flush=True)
            sweeps.append(s)
            labels.append(f"seed {seed}, {start:.0e} to {end:.0e}")
    save_figure(lr_sweep_figure(sweeps, labels, title=f"Learning-rate sweeps, {words}: 3 seeds x 2 ranges"), picture)


def tta(*models):
    test = cnnfruit.load_embedded().test
    for path in models:
        clf = cnnfruit.Classifier.load(path)
        scores = {mode: clf.evaluate(test, tta=mode).accuracy for mode in ("none", "flip", "rotate")}
        print(path, "  ".join(f"{m} {100 * a:.1f}% ({round(a * len(test))}/{len(test)})" for m, a in scores.items()),
              flush=True)


def other(unseen_list, three_folder, *models):
    unseen = [line.strip() for line in open(unseen_list) if line.strip()]
    known = cnnfruit.read_image_folder(three_folder).test
    for path in models:
        clf = cnnfruit.Classifier.load(path)
        for name, probs, labels in (("unseen fruits", clf.predict_proba(unseen), None),
                                    ("known fruits (3-fruit test)", clf.predict_proba(known.images), known.labels)):
            top = probs.max(axis=1)
            answers = np.array(clf.class_names)[probs.argmax(axis=1)]
            print(f"{path} on {len(probs)} {name}:")
            print("   top probability: quartiles " + ", ".join(f"{q:.3f}" for q in np.quantile(top, [0.25, 0.5, 0.75]))
                  + f"; share at 1.000 (rounded): {np.mean(top >= 0.9995):.1%}")
            print("   unsure (top < P): " + ", ".join(f"P={t}: {np.mean(top < t):.1%}" for t in THRESHOLDS))
            print("   answers: " + ", ".join(f"{c} {int((answers == c).sum())}" for c in clf.class_names))
            if "other" in clf.class_names:
                print(f"   'other' or unsure at P=0.9: {np.mean((answers == 'other') | (top < 0.9)):.1%}")
            if labels is not None:
                correct = probs.argmax(axis=1) == labels
                print(f"   accuracy {correct.mean():.1%}; sure (top >= 0.9) and right: "
                      f"{np.mean(correct & (top >= 0.9)):.1%}, sure and wrong: {np.mean(~correct & (top >= 0.9)):.1%}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("lr", "tta", "other"):
        sys.exit(__doc__)
    cnnfruit.configure_threads()
    {"lr": lr, "tta": tta, "other": other}[sys.argv[1]](*sys.argv[2:])
