"""The one preprocessing path: dataset build, --data folders and predict give identical tensors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnfruit.data import datasets as data
from cnnfruit.data import preprocess
from cnnfruit.data import splits
from cnnfruit.data.datasets import load_embedded, read_image_folder


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW_PHOTOS = os.path.join(REPO, "..", "shared", "fruits-360")


def test_embedded_dataset_shapes_and_classes():
    dataset = load_embedded()
    assert dataset.class_names == ["Carambula", "Lychee", "Pear"]
    assert dataset.train.images.shape == (1472, 32, 32, 3) and dataset.train.images.dtype == np.uint8
    assert dataset.test.images.shape == (496, 32, 32, 3)
    assert np.bincount(dataset.test.labels).tolist() == [166, 166, 164]


def test_grey_is_luma_in_raw_pixel_range():
    images = np.array([[[[255, 255, 255], [0, 0, 0]], [[255, 0, 0], [0, 0, 255]]]], dtype=np.uint8)
    x = preprocess.to_inputs(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [[255, 0], [0.299 * 255, 0.114 * 255]], rtol=1e-6)


def test_build_script_data_folder_and_predict_agree(tmp_path, make_image_folder):
    root = str(make_image_folder(tmp_path / "photos", classes=("apple", "kiwi"), train=3, test=3, size=57, fmt="jpg"))
    built = tmp_path / "out" / "set.npz"
    built.parent.mkdir()
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "build_dataset.py"), root, str(built)],
                   check=True, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    with np.load(built, allow_pickle=False) as z:
        shipped = z["test_images"]
        files = [os.path.join(root, f) for f in z["test_files"]]
    folder = read_image_folder(root)
    one_by_one = np.stack([preprocess.load_image(path) for path in files])
    for color in ("grey", "rgb"):
        expected = preprocess.to_inputs(shipped, color)
        np.testing.assert_array_equal(preprocess.to_inputs(folder.test.images, color), expected)
        np.testing.assert_array_equal(preprocess.to_inputs(one_by_one, color), expected)


def test_resize_is_area_average(tmp_path):
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, ::2] = 200  # alternate columns: an area average gives 100 everywhere
    Image.fromarray(pixels).save(tmp_path / "stripes.png")
    assert np.all(preprocess.load_image(tmp_path / "stripes.png") == 100)


@pytest.mark.skipif(not os.path.isdir(RAW_PHOTOS), reason="the raw photos are not beside this checkout")
def test_embedded_arrays_equal_raw_photos():
    with np.load(data.embedded_path(), allow_pickle=False) as z:
        names, images = z["test_files"][::50], z["test_images"][::50]
    for name, image in zip(names, images):
        np.testing.assert_array_equal(preprocess.load_image(os.path.join(RAW_PHOTOS, name)), image)


def test_image_folder_ignores_non_images_and_sorts_classes(tmp_path, make_image_folder):
    root = str(make_image_folder(tmp_path, classes=("apple", "kiwi"), train=2, test=2, size=40))
    (tmp_path / "train" / "kiwi" / "notes.txt").write_text("not an image")
    dataset = read_image_folder(root)
    assert dataset.class_names == ["apple", "kiwi"] and dataset.skipped == 0
    assert len(dataset.train) == 4 and dataset.train.labels.tolist() == [0, 0, 1, 1]


def test_split_is_seeded_and_disjoint():
    a = splits.train_val_split(100, 0.3, np.random.default_rng(5))
    b = splits.train_val_split(100, 0.3, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert len(a[1]) == 30 and not set(a[0]) & set(a[1])
