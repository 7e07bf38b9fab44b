"""Shared fixtures: image folders, small datasets and settings that train in milliseconds (made by
the functions of helpers.py)."""
import numpy as np
import pytest

from cnnfruit.data.datasets import Dataset

from helpers import tinted, write_image_folder


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
    return Dataset("synthetic", ["a", "b", "c"], tinted(24, rng), tinted(9, rng))
