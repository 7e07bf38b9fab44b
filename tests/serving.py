"""Helpers for the tests of `cnnfruit serve`: a small trained model, photos, a server on a thread."""
import contextlib
import threading
import time

import numpy as np
from PIL import Image

import cnnfruit
from helpers import TINY_SETTINGS

# Standardized inputs keep the probabilities away from 0 and 1, so their last bits are live.
TRAINING = dict(TINY_SETTINGS, epochs=2, normalize="standardize", optimizer="adam", lr=3e-3, batch_size=32)
# One test photo of each class, and two more.
PHOTO_ROWS = (0, 200, 400, 401, 10, 250)


def train_model(tmp_path_factory):
    """best.npz of two epochs of a tiny network on the embedded fruit photos (a few seconds),
    trained once per test session and shared by the test modules of the server."""
    folder = tmp_path_factory.getbasetemp() / "serve-model"
    if not (folder / "best.npz").exists():
        cnnfruit.fit(cnnfruit.load_embedded(), cnnfruit.TrainConfig(**TRAINING), out=str(folder))
    return str(folder / "best.npz")


def write_photos(folder, size=96):
    """Embedded test photos scaled up to size x size, as JPEG and PNG files, as a camera would hand them over."""
    data = cnnfruit.load_embedded()
    paths = []
    for k, row in enumerate(PHOTO_ROWS):
        image = Image.fromarray(data.test.images[row]).resize((size, size), Image.Resampling.BICUBIC)
        path = folder / (f"photo{k}.jpg" if k % 2 == 0 else f"photo{k}.png")
        image.save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
        paths.append(path)
    return paths


def as_float32(probabilities):
    """JSON floats back to the float32 bits they came from."""
    return np.array(list(probabilities.values()), dtype=np.float64).astype(np.float32)


@contextlib.contextmanager
def serving(app):
    """app served by uvicorn, as `cnnfruit serve` configures it, on a thread; yields its URL."""
    import uvicorn

    from cnnfruit.serve.server import address, config, listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield address(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
