"""Datasets: the embedded fruit images, image folders, the train/validation split, batches.

A dataset here is a `Split` per part (train, test) of uint8 RGB images (N, 32, 32, 3) with
integer labels and shared class names; `preprocess.to_inputs` turns images into tensors.
"""
import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .errors import CnnfruitError, SettingError
from .preprocess import load_image

EMBEDDED_NAME = "fruits360-32"
EMBEDDED_FILE = "fruits360-32.npz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class Split:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    paths: list  # source file of each image ([] when unknown); the embedded set's are relative to Fruits-360

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        paths = [self.paths[i] for i in index] if self.paths else []
        return Split(self.images[index], self.labels[index], paths)


@dataclass
class Dataset:
    name: str
    class_names: list
    train: Split
    test: Split
    source: str = None  # the folder it was read from (absolute), None for the embedded set
    options: dict = field(default_factory=dict)  # how it was read, so a resumed run reads it the same way
    skipped: int = 0  # unreadable images left out (with skip_bad)


def embedded_path():
    return resources.files("cnnfruit") / "datasets" / EMBEDDED_FILE


def load_embedded():
    """The fruit photos shipped inside the package (see cnnfruit/datasets/README.md)."""
    with resources.as_file(embedded_path()) as path, np.load(path, allow_pickle=False) as z:
        class_names = [str(name) for name in z["class_names"]]
        # paths: each photo's file in the Fruits-360 tree it was built from, e.g. test/Pear/321_100.jpg
        train = Split(z["train_images"], z["train_labels"].astype(np.int64), [str(f) for f in z["train_files"]])
        test = Split(z["test_images"], z["test_labels"].astype(np.int64), [str(f) for f in z["test_files"]])
    return Dataset(EMBEDDED_NAME, class_names, train, test)


def _is_image_file(name):
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith(".")


def list_class_folders(split_dir):
    """Sorted class folder names under split_dir, each holding at least one image file."""
    if not os.path.isdir(split_dir):
        raise CnnfruitError(f"data folder {split_dir} does not exist")
    names = sorted(
        entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith(".")
    )
    if not names:
        raise CnnfruitError(f"data folder {split_dir} has no class folders")
    return names


def read_split(split_dir, class_names, skip_bad=False):
    """Load every image under split_dir/<class>/; returns the Split and the number skipped."""
    images, labels, paths, skipped = [], [], [], 0
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        files = sorted(f for f in os.listdir(class_dir) if _is_image_file(f))
        if not files:
            raise CnnfruitError(f"class folder {class_dir} holds no image files")
        for file_name in files:
            path = os.path.join(class_dir, file_name)
            try:
                images.append(load_image(path))
            except CnnfruitError as err:
                if not skip_bad:
                    raise SettingError("{message} ({skip_bad} skips unreadable images)", message=str(err)) from None
                skipped += 1
                continue
            labels.append(label)
            paths.append(path)
    if not images:
        raise CnnfruitError(f"data folder {split_dir} holds no readable images")
    return Split(np.stack(images), np.array(labels, dtype=np.int64), paths), skipped


def read_image_folder(root, skip_bad=False):
    """The DIR/train/<class>/* and DIR/test/<class>/* layout; classes are the sorted folder names.

    With skip_bad, unreadable images are left out and counted in the Dataset's `skipped`.
    """
    if not os.path.isdir(root):
        raise CnnfruitError(f"data folder {root} does not exist")
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    for part in (train_dir, test_dir):
        if not os.path.isdir(part):
            raise CnnfruitError(
                f"data folder {root} has no {os.path.basename(part)}/ folder: it needs train/<class>/* and test/<class>/*"
            )
    train_classes = list_class_folders(train_dir)
    test_classes = list_class_folders(test_dir)
    if train_classes != test_classes:
        raise CnnfruitError(
            f"class folders differ between {train_dir} ({', '.join(train_classes)}) "
            f"and {test_dir} ({', '.join(test_classes)})"
        )
    train, skipped_train = read_split(train_dir, train_classes, skip_bad)
    test, skipped_test = read_split(test_dir, train_classes, skip_bad)
    name = os.path.basename(os.path.normpath(root))
    return Dataset(name, train_classes, train, test, source=os.path.abspath(root), options={"skip_bad": skip_bad},
                   skipped=skipped_train + skipped_test)


def fingerprint(dataset):
    """A digest of a dataset's classes, pixels and labels: equal digests mean the same data."""
    digest = hashlib.sha256()
    digest.update("\n".join(dataset.class_names).encode("utf-8"))
    for part in (dataset.train, dataset.test):
        for array in (part.images, part.labels.astype(np.int64)):
            digest.update(str(array.shape).encode("ascii"))
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
