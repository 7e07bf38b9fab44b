import numpy as np
import pytest


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


def make_image_folder(root, classes=("apple", "kiwi", "plum"), train=8, test=3, seed=0):
    """A tiny DIR/train/<class>/*.png, DIR/test/<class>/*.png set: classes differ in brightness."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, count in (("train", train), ("test", test)):
        for label, name in enumerate(classes):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (32, 32, 3)) + 80 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Shared, read-only: tests that change images make their own with make_image_folder."""
    return make_image_folder(tmp_path_factory.mktemp("data"))
