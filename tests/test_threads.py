"""The library called from several threads at once: the same bits as serial calls, and no abort.

Each case runs in a child process: Numba's workqueue layer aborts the whole process (SIGABRT) on
concurrent use, which must fail the test rather than kill pytest.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import sys
import threading

import numpy as np

import cnnfruit
from cnnfruit.nn.architecture import Architecture, init_parameters

cases, configure = sys.argv[1].split(","), sys.argv[2] == "configure"
if configure:
    cnnfruit.configure_threads()  # the README's first line: Numba's workqueue layer, BLAS on one thread
data = cnnfruit.load_embedded()
images, labels = data.test.images[:96], data.test.labels[:96]
# Batches of 16 through 8 kernels and 6728 features into 64 units: enough work for the parallel
# kernels, and products that OpenBLAS sums otherwise on 2 threads than on 1
ARCH = Architecture(kernels=8, kernel_size=4, hidden=(64,), classes=3)


def classifier(seed):
    return cnnfruit.Classifier(ARCH, init_parameters(ARCH, np.random.default_rng(seed)), data.class_names)


def in_threads(*work):
    """Run each callable in a thread of its own; re-raise the first error."""
    errors = []

    def run(job):
        try:
            job()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def same(a, b, what):
    assert np.array_equal(a, b), f"{what}: differs from the serial call"


def shared():
    clf = classifier(0)
    split = cnnfruit.Split(images, labels, [])
    serial = clf.predict_proba(images, batch_size=16)
    serial_tta = clf.predict_proba(images[:20], batch_size=8, tta="flip")
    scored = clf.evaluate(split, batch_size=16)
    maps = clf.feature_maps(images[0])

    def calls():
        for _ in range(3):
            same(clf.predict_proba(images, batch_size=16), serial, "predict_proba")
            same(clf.predict_proba(images[:20], batch_size=8, tta="flip"), serial_tta, "predict_proba tta")
            again = clf.evaluate(split, batch_size=16)
            assert (again.loss, again.accuracy) == (scored.loss, scored.accuracy)
            same(again.probabilities, scored.probabilities, "evaluate")
            same(clf.feature_maps(images[0]), maps, "feature_maps")

    in_threads(*[calls] * 4)


# A stack whose second conv layer runs as Winograd products and whose pool has 2 x 2 windows: the
# layers that keep per-layer buffers of their own (transformed weights, argmax places)
STACK = Architecture(in_channels=1, image_size=32, layers="conv8x3 same, conv32x3 same, maxpool2, dense16", classes=3)


def shared_stack():
    clf = cnnfruit.Classifier(STACK, init_parameters(STACK, np.random.default_rng(4)), data.class_names)
    serial = clf.predict_proba(images, batch_size=16)
    maps = clf.feature_maps(images[0], layer=1)
    explained = cnnfruit.explain(clf, images[1], patch=16, stride=16)

    def calls():
        for _ in range(2):
            same(clf.predict_proba(images, batch_size=16), serial, "predict_proba of a stack")
            same(clf.feature_maps(images[0], layer=1), maps, "feature_maps of a Winograd layer")
            again = cnnfruit.explain(clf, images[1], patch=16, stride=16)
            same(again.gradient, explained.gradient, "explain's gradient through a stack")
            same(again.occlusion, explained.occlusion, "explain's occlusion through a stack")

    in_threads(*[calls] * 4)


def separate():
    a, b = classifier(1), classifier(2)
    expected = {id(a): a.predict_proba(images, batch_size=16), id(b): b.predict_proba(images, batch_size=16)}

    def calls(clf):
        return lambda: [same(clf.predict_proba(images, batch_size=16), expected[id(clf)], "predict_proba")
                        for _ in range(4)]

    in_threads(calls(a), calls(b))


def small_data():
    return cnnfruit.Dataset("small", data.class_names, data.train.subset(np.arange(0, 600, 10)),
                            data.test.subset(np.arange(12)))


def fit(seed):
    config = cnnfruit.TrainConfig(epochs=2, batch_size=16, kernels=8, hidden=(32,), normalize="scale",
                                  optimizer="adam", lr=1e-3, seed=seed)
    return cnnfruit.fit(small_data(), config).classifier.params


def fit_beside_predict():
    expected_params = fit(0)
    clf = classifier(3)
    expected = clf.predict_proba(images, batch_size=16)
    done, result, predictions = threading.Event(), {}, []

    def training():
        try:
            result["params"] = fit(0)
        finally:
            done.set()

    def predicting():
        while True:
            predictions.append(clf.predict_proba(images, batch_size=16))
            if done.is_set():
                break

    in_threads(training, predicting)
    for name, value in expected_params.items():
        same(result["params"][name], value, f"fit's {name}")
    for p in predictions:
        same(p, expected, "predict_proba beside fit")


def two_fits():
    expected = {seed: fit(seed) for seed in (0, 1)}
    results = {}
    in_threads(*[lambda seed=seed: results.setdefault(seed, fit(seed)) for seed in (0, 1)])
    for seed in (0, 1):
        for name, value in expected[seed].items():
            same(results[seed][name], value, f"fit {seed}'s {name}")


for case in cases:
    globals()[case]()
    print(case, "ok", flush=True)
'''


def run_child(cases, configure):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "2"}
    env.pop("NUMBA_THREADING_LAYER", None)
    done = subprocess.run([sys.executable, "-c", CHILD, ",".join(cases), "configure" if configure else "plain"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    assert done.stdout.split() == [word for case in cases for word in (case, "ok")]


@pytest.mark.parametrize("configure", [False, True], ids=["default-layer", "configure_threads"])
def test_one_classifier_shared_by_four_threads_gives_the_serial_bits(configure):
    run_child(["shared", "shared_stack"], configure)


@pytest.mark.parametrize("configure", [False, True], ids=["default-layer", "configure_threads"])
def test_two_classifiers_in_two_threads_keep_their_serial_bits(configure):
    """Each call's BLAS limit must hold while it runs, whichever thread makes it."""
    run_child(["separate"], configure)


def test_fit_beside_predict_and_two_fits_at_once_give_the_serial_results():
    run_child(["fit_beside_predict", "two_fits"], configure=True)
