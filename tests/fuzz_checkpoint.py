"""Mutated checkpoints through everything that reads one; run by tests/test_fuzz.py in a child process.

    python tests/fuzz_checkpoint.py EXAMPLES

Every mutation of a real checkpoint (an Adam run stopped mid-epoch, so every field is filled)
must load, predict and train on, or raise CnnfruitError: any other exception fails, and so does
a crash, which is why this runs in a process of its own. Hypothesis draws the mutations from a
fixed seed (derandomize), so a run is repeatable; the deadline only stops a hung example.
"""
import io
import json
import os
import sys
import tempfile
import threading
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import cnnfruit
from cnnfruit import checkpoint
from cnnfruit.config import TrainConfig
from cnnfruit.errors import CnnfruitError
from cnnfruit.training.loop import TrainingLoop
from helpers import TINY_SETTINGS, tinted


def base_checkpoint(folder):
    rng = np.random.default_rng(5)
    data = cnnfruit.Dataset("tinted", ["apple", "kiwi", "plum"], tinted(16, rng), tinted(3, rng))
    config = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, batch_size=4, **TINY_SETTINGS)
    cnnfruit.fit(data, config, out=os.path.join(folder, "run"))
    stop = threading.Event()
    cnnfruit.resume(os.path.join(folder, "run", "model.npz"), epochs=2, data=data, stop=stop,
                    on_step=lambda done, total: stop.set())
    with open(os.path.join(folder, "run", "model.npz"), "rb") as f:
        return f.read(), data


def members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def zipped(contents):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load_npy(data):
    return np.load(io.BytesIO(data), allow_pickle=False)


JSON_FIELDS = ("train_config", "train_history", "train_rng_state", "train_data", "train_partial")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

odd_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64, ">f4", np.int8, np.int32, np.int64, np.uint64,
                           np.bool_, np.complex64, "<U3"]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
)


def paths_in(value, prefix=()):
    """Every place in a JSON value (a tuple of keys), the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths_in(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from paths_in(inner, prefix + (index,))


def replaced(value, path, new):
    if not path:
        return new
    value = value.copy()
    value[path[0]] = replaced(value[path[0]], path[1:], new)
    return value


class Mutation(bytes):
    """A mutated checkpoint's bytes that print as what was done, not as 30 kB of bytes."""

    def __new__(cls, data, kind):
        mutation = super().__new__(cls, data)
        mutation.kind = kind
        return mutation

    def __repr__(self):
        return f"<{self.kind}: {len(self)} bytes>"


@st.composite
def mutations(draw, blob):
    """Bytes of a mutated checkpoint, and what was done to it."""
    kind = draw(st.sampled_from(["flip", "truncate", "member bytes", "array", "reshape", "json", "drop", "add"]))
    if kind == "flip":
        data = bytearray(blob)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return Mutation(data, kind)
    if kind == "truncate":
        return Mutation(blob[:draw(st.integers(0, len(blob) - 1))], kind)
    contents = members(blob)
    name = draw(st.sampled_from(sorted(contents)))
    if kind == "member bytes":  # inside one array, with a correct CRC: reaches the .npy parser and the checks
        data = bytearray(contents[name])
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        contents[name] = bytes(data)
    elif kind == "array":
        contents[name] = npy(draw(odd_arrays))
    elif kind == "reshape":
        array = load_npy(contents[name])
        shape = list(array.shape) or [1]
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = draw(st.integers(0, 40))
        new = np.resize(array, shape) if array.size else np.zeros(shape, array.dtype)
        contents[name] = npy(new.astype(array.dtype))
    elif kind == "json":
        field = draw(st.sampled_from(JSON_FIELDS))
        value = json.loads(str(load_npy(contents[f"{field}.npy"])))
        places = list(paths_in(value))
        place = draw(st.sampled_from(places))
        new = draw(json_values | st.sampled_from([10**30, -1, 0, float("nan"), float("inf"), "", "x" * 300]))
        text = json.dumps(replaced(value, place, new))
        if draw(st.booleans()) and draw(st.booleans()):
            text = "[" * draw(st.integers(15, 5000)) + text
        contents[f"{field}.npy"] = npy(np.array(text))
    elif kind == "drop":
        del contents[name]
    else:
        contents[draw(st.sampled_from(["extra.npy", "param_extra.npy", "optstate_conv_w.extra.npy", "notes.txt"]))] = \
            npy(draw(odd_arrays))
    return Mutation(zipped(contents), f"{kind} {name}")


def exercise(path, data, pixels):
    """Everything a user can do with a checkpoint: load it, predict with it, resume training it."""
    ckpt = checkpoint.load(path)
    clf = cnnfruit.Classifier.from_checkpoint(ckpt)
    probabilities = clf.predict_proba(pixels)
    assert probabilities.shape == (len(pixels), len(clf.class_names))
    if ckpt.rng_state:
        config = TrainConfig.from_dict(ckpt.config)
        config.epochs = ckpt.epoch + 1
        loop = TrainingLoop.resume(data, config, ckpt)
        loop.run_epoch()


def main(examples):
    with tempfile.TemporaryDirectory(prefix="cnnfruit-fuzz-") as folder:  # gone afterwards, pass or fail
        fuzz(folder, examples)


def fuzz(folder, examples):
    blob, data = base_checkpoint(folder)
    blob = Mutation(blob, "unchanged")  # so that hypothesis prints the strategy briefly
    pixels = data.test.images
    path = os.path.join(folder, "mutated.npz")
    outcomes = {}

    @settings(max_examples=examples, derandomize=True, deadline=20_000, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutations(blob))
    def mutated_checkpoints(mutation):
        kind = mutation.kind.split()[0]
        with open(path, "wb") as f:
            f.write(mutation)
        try:
            exercise(path, data, pixels)
            outcome = "works"
        except CnnfruitError:
            outcome = "refused"
        outcomes[kind, outcome] = outcomes.get((kind, outcome), 0) + 1

    exercise(os.path.join(folder, "run", "model.npz"), data, pixels)  # the unmutated one works
    mutated_checkpoints()
    print(json.dumps({f"{kind}: {outcome}": count for (kind, outcome), count in sorted(outcomes.items())}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
