"""Shared fixtures: image folders, small datasets and settings that train in milliseconds."""
import numpy as np
import pytest
from PIL import Image

from cnnfruit.data.datasets import Dataset, Split

# A network small enough for a step to take well under a millisecond.
TINY_SETTINGS = {"kernels": 2, "kernel_size": 5, "hidden": (6,)}


def write_image_folder(root, classes=("apple", "kiwi", "plum"), train=8, test=3, size=32, fmt="png", seed=0):
    """root/train/<class>/*.fmt and root/test/<class>/*.fmt; classes differ in brightness."""
    rng = np.random.default_rng(seed)
    for part, count in (("train", train), ("test", test)):
        for label, name in enumerate(classes):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (size, size, 3)) + 80 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.{fmt}")
    return root


@pytest.fixture(autouse=True, scope="session")
def private_image_cache(tmp_path_factory):
    """Every test's image folders are cached under the session's tmp folder, never in ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CNNFRUIT_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
    yield
    patch.undo()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def make_image_folder():
    """write_image_folder, for tests that need a folder of their own (or change its images)."""
    return write_image_folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Shared and read-only: 3 classes, 8 training and 3 test images each."""
    return write_image_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture
def synthetic_dataset(rng):
    """Three classes of random 32x32 photos, each class tinted so the task is learnable."""
    def split(n):
        labels = np.arange(n) % 3
        images = rng.integers(0, 120, (n, 32, 32, 3))
        images[np.arange(n), :, :, labels] += 120
        return Split(images.astype(np.uint8), labels.astype(np.int64), [])

    return Dataset("synthetic", ["a", "b", "c"], split(24), split(9))
