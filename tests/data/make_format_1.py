"""Writes format_1/: checkpoints of cnnfruit's format 1, made by the code that wrote that format.

    git archive 49f2974 | tar -x -C /tmp/old      # the last commit that wrote format 1
    PYTHONPATH=/tmp/old python tests/data/make_format_1.py tests/data/format_1

interrupted.npz: a small Adam run (flips, dropout, a cosine schedule) stopped after 3 steps of its
second epoch, so that every field of the format is filled; unbroken.npz: the weights of the same
run never stopped; probabilities.npy: what interrupted.npz predicts for the first 6 test images.
tests/test_layers_checkpoints.py loads, predicts and resumes them with the code of today.
"""
import sys
import threading
from pathlib import Path

import numpy as np

import cnnfruit


def dataset():
    data = cnnfruit.load_embedded()
    return cnnfruit.Dataset(data.name, data.class_names, data.train.subset(np.arange(0, 400, 10)),
                            data.test.subset(np.arange(6)))


CONFIG = dict(kernels=2, kernel_size=5, hidden=(6,), optimizer="adam", lr=1e-3, batch_size=4, epochs=2,
              augment="flip", dropout=0.2, lr_schedule="cosine", normalize="standardize", seed=4)


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = dataset()
    config = cnnfruit.TrainConfig(**CONFIG)
    unbroken = cnnfruit.fit(data, config)
    np.savez(out / "unbroken.npz", **unbroken.classifier.params)
    stop, steps = threading.Event(), []

    def on_step(done, total):
        steps.append(done)
        if len(steps) == total + 3:  # all of epoch 1, then 3 steps of epoch 2
            stop.set()

    run = cnnfruit.Run.start(data, config, str(out / "run"))
    result = run.fit(on_step=on_step, stop=stop)
    assert result.interrupted
    (out / "run" / "model.npz").rename(out / "interrupted.npz")
    clf = cnnfruit.Classifier.load(str(out / "interrupted.npz"))
    np.save(out / "probabilities.npy", clf.predict_proba(data.test.images))
    for leftover in (out / "run").iterdir():
        leftover.unlink()
    (out / "run").rmdir()


if __name__ == "__main__":
    main(sys.argv[1])
