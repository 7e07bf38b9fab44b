"""Datasets: the embedded fruit images, image folders, the train/validation split, batches.

A dataset here is a `Split` per part (train, test, and val when the data has one) of uint8 RGB
images (N, 32, 32, 3) with integer labels and shared class names; `preprocess.to_inputs` turns
images into tensors.

`read_image_folder` takes a folder in either of the two layouts people have:

- split folders: DIR/train/<class>/* and DIR/test/<class>/*, and DIR/val/<class>/* when there is
  one. The names are matched whatever their case, with their common variants: train or training,
  test or testing, val, valid or validation (Fruits-360 ships Training/ and Test/). Other folders
  beside the split folders are left out and named in the dataset's layout_note (Fruits-360 has
  papers/ and test-multiple_fruits/ there), unless one is named like a class, which is an error.
- class folders alone: DIR/<class>/*. Then a test split is cut from every class alike: the same
  share, test_fraction, of each class's files (at least one, never all), chosen by a seeded hash
  of each file's name. A photo added or removed later moves few others between train and test.

Ambiguous folders are errors: two folders for one split (train/ and Training/), a folder named
like a class beside the split folders, a split-named folder that holds images itself beside
class folders. So are class folder names that would print wrongly: not valid UTF-8, or holding
a control character such as a newline. Classes are the sorted class folder names; at least 2.
"""
import hashlib
import numbers
import os
import unicodedata
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from cnnfruit.config import IMAGE_SIZE
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.data.cache import Folder, ImageFile, load_folders
from cnnfruit.data.preprocess import printable

EMBEDDED_NAME = "fruits360-32"
EMBEDDED_FILE = "fruits360-32.npz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLITS = ("train", "test", "val")
SPLIT_FOLDER_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test",
                      "val": "val", "valid": "val", "validation": "val"}
TEST_FRACTION = 0.2
# Characters that would break or disguise the line that prints a class name: controls (newline,
# escape), invisible formatting (bidirectional overrides, zero-width marks), line and paragraph
# separators, and lone surrogates, which cannot be printed or written as UTF-8 at all (os.listdir
# gives undecodable bytes as lone surrogates).
UNPRINTABLE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
MAX_NAME_LENGTH = 255  # a class name is a folder name


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
    val: Split = None  # the data's own validation images (a val/ folder), None when it has none
    source: str = None  # the folder it was read from (absolute), None for the embedded set
    options: dict = field(default_factory=dict)  # read_image_folder's settings that shape the data
    skipped: int = 0  # unreadable images left out (skip_bad)
    layout_note: str = ""  # what read_image_folder did that its caller may want to say; "" if nothing
    loading: object = None  # cache.LoadStats of the folder's load: skipped files, cache hits, time



def embedded_path():
    return resources.files("cnnfruit.data") / "embedded" / EMBEDDED_FILE


def load_embedded():
    """The fruit photos shipped inside the package (see cnnfruit/data/embedded/README.md)."""
    with resources.as_file(embedded_path()) as path, np.load(path, allow_pickle=False) as z:
        class_names = [str(name) for name in z["class_names"]]
        # paths: each photo's file in the Fruits-360 tree it was built from, e.g. test/Pear/321_100.jpg
        train = Split(z["train_images"], z["train_labels"].astype(np.int64), [str(f) for f in z["train_files"]])
        test = Split(z["test_images"], z["test_labels"].astype(np.int64), [str(f) for f in z["test_files"]])
    return Dataset(EMBEDDED_NAME, class_names, train, test)


# ---------------------------------------------------------------------------------------------
# listing folders


def _is_image_name(name):
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _scan(folder):
    try:
        return os.scandir(folder)
    except OSError as err:
        raise CnnfruitError(f"cannot list folder {printable(folder)}: {err.strerror or err}") from None


def _subfolders(folder):
    """Sorted names of folder's subfolders, hidden ones left out."""
    with _scan(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def _image_files(folder):
    """folder's image files, sorted by name, each with its size and modification time."""
    files = []
    with _scan(folder) as entries:
        for entry in entries:
            if not _is_image_name(entry.name) or entry.is_dir():
                continue
            try:
                stat = entry.stat()
                files.append(ImageFile(entry.name, stat.st_size, stat.st_mtime_ns))
            except OSError:  # a dangling link: kept, so that decoding it names the problem
                files.append(ImageFile(entry.name, -1, -1))
    return sorted(files, key=lambda f: f.name)


def _check_class_name(folder, name):
    path = os.path.join(folder, name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise CnnfruitError(f"class folder {printable(path)} has a name that is not valid UTF-8; rename it") from None
    if _unprintable(name):
        raise CnnfruitError(
            f"class folder {printable(path)} has a control character (such as a newline) in its name; rename it"
        )


def _unprintable(name):
    return any(unicodedata.category(c) in UNPRINTABLE_CATEGORIES for c in name)


def class_name_problem(name, number):
    """Why `name`, the number-th class name, cannot be one (None if it can). Checkpoints and new
    training runs check alike, so that a run never saves a model it could not load."""
    if not isinstance(name, str):
        return f"class name {number} is not text"
    if len(name) > MAX_NAME_LENGTH:
        return f"class name {number} is longer than {MAX_NAME_LENGTH} characters"
    if not name.strip():
        return f"class name {number} is empty"
    if _unprintable(name):
        return f"class name {name!r} has a control character"
    return None


def check_class_names(names):
    """Two or more names, unique, each printable on one line; CnnfruitError naming the first bad one."""
    if len(names) < 2:
        raise CnnfruitError(f"class_names holds {len(names)} name; a classifier needs at least 2")
    seen = set()
    for number, name in enumerate(names, 1):
        problem = class_name_problem(name, number)
        if problem is not None:
            raise CnnfruitError(problem)
        if name in seen:
            raise CnnfruitError(f"class name {name!r} appears twice")
        seen.add(name)


def list_class_folders(split_dir):
    """Sorted class folder names under split_dir, checked to print safely."""
    if not os.path.isdir(split_dir):
        raise CnnfruitError(f"data folder {printable(split_dir)} does not exist")
    names = _subfolders(split_dir)
    if not names:
        raise CnnfruitError(f"data folder {printable(split_dir)} has no class folders")
    for name in names:
        _check_class_name(split_dir, name)
    return names


def _list_classes(folder, class_names):
    """[ImageFile] of each class folder of folder, in class order; a class without images is an error."""
    listed = []
    for name in class_names:
        class_dir = os.path.join(folder, name)
        files = _image_files(class_dir)
        if not files:
            raise CnnfruitError(f"class folder {printable(class_dir)} holds no image files")
        listed.append(files)
    return listed


def _needs_two_classes(folder, class_names):
    if len(class_names) < 2:
        raise CnnfruitError(
            f"data folder {printable(folder)} has one class folder ({printable(class_names[0])}): "
            "a classifier needs at least 2"
        )


# ---------------------------------------------------------------------------------------------
# layouts


@dataclass
class _Layout:
    class_names: list
    parts: dict  # split -> [(class folder, [ImageFile])] in class order; one folder may serve two splits
    split_dirs: dict  # split -> the folder its images come from, for messages
    note: str


def _find_split_folders(root):
    """({split: folder name}, [other folder names]) of root; two folders for one split is an error."""
    splits, others = {}, []
    for name in _subfolders(root):
        split = SPLIT_FOLDER_NAMES.get(name.lower())
        if split is None:
            others.append(name)
        elif split in splits:
            raise CnnfruitError(
                f"data folder {printable(root)} has both {printable(splits[split])}/ and {printable(name)}/ "
                f"as its {split} folder; keep one"
            )
        else:
            splits[split] = name
    return splits, others


def _split_layout(root, splits, others):
    _check_split_folders(root, splits, others)
    folders = {split: os.path.join(root, splits[split]) for split in SPLITS if split in splits}
    class_names = _same_classes(folders)
    _needs_two_classes(folders["train"], class_names)
    lowered = {name.lower() for name in class_names}
    for name in others:
        if name.lower() in lowered:
            raise CnnfruitError(
                f"data folder {printable(root)} has a class folder {printable(name)}/ beside its split folders; "
                "move it into them"
            )
    parts = {}
    for split, folder in folders.items():
        listed = _list_classes(folder, class_names)
        parts[split] = [(os.path.join(folder, name), files) for name, files in zip(class_names, listed)]
    return _Layout(class_names, parts, folders, _split_note(root, splits, others))


def _check_split_folders(root, splits, others):
    """Train and test are there, and no split folder could as well be a class folder."""
    if others:
        for split, name in splits.items():
            folder = os.path.join(root, name)
            if not _subfolders(folder) and _image_files(folder):
                raise CnnfruitError(
                    f"data folder {printable(root)} is ambiguous: {printable(name)}/ holds images like its class "
                    f"folders but is named like the {split} split; rename it, or put the class folders in train/ and test/"
                )
    for split in ("train", "test"):
        if split not in splits:
            raise CnnfruitError(
                f"data folder {printable(root)} has no {split}/ folder: it needs train/<class>/* and test/<class>/*"
            )


def _same_classes(folders):
    """The class folder names that every split folder has (the same in each)."""
    listed = {split: list_class_folders(folder) for split, folder in folders.items()}
    for split, names in listed.items():
        if names != listed["train"]:
            raise CnnfruitError(
                f"class folders differ between {printable(folders['train'])} ({printable(', '.join(listed['train']))}) "
                f"and {printable(folders[split])} ({printable(', '.join(names))})"
            )
    return listed["train"]


def _split_note(root, splits, others):
    said = []
    if any(name != split for split, name in splits.items()) or "val" in splits:
        said.append("read " + ", ".join(f"{printable(splits[split])}/ as {split}" for split in SPLITS if split in splits))
    if others:
        said.append("left out " + ", ".join(f"{printable(name)}/" for name in others) + " (not split folders)")
    return f"{printable(root)}: " + "; ".join(said) if said else ""


def _class_layout(root, others, test_fraction, seed):
    for name in others:
        _check_class_name(root, name)
    _needs_two_classes(root, others)
    listed = _list_classes(root, others)
    train, test = [], []
    for name, files in zip(others, listed):
        folder = os.path.join(root, name)
        held_out = hold_out([f.name for f in files], test_fraction, seed, folder)
        train.append((folder, [f for f, out in zip(files, held_out) if not out]))
        test.append((folder, [f for f, out in zip(files, held_out) if out]))
    n_test, n_all = sum(len(files) for _, files in test), sum(len(files) for files in listed)
    note = (f"{printable(root)} has no train/ and test/ folders: held out {n_test} of its {n_all} images "
            f"as the test split, {test_fraction:g} of each class (seed {seed})")
    return _Layout(list(others), {"train": train, "test": test}, {"train": root, "test": root}, note)


def hold_out(names, test_fraction, seed, folder="this class"):
    """A bool mask of the names held out for testing: round(test_fraction * n) of them, at least 1
    and at most n - 1, the ones that come first when ordered by a seeded SHA-256 of the name."""
    n = len(names)
    if n < 2:
        raise CnnfruitError(
            f"class folder {printable(folder)} has only {n} image: cutting a test split needs at least 2 in every class"
        )
    count = min(max(round(test_fraction * n), 1), n - 1)
    salt = f"cnnfruit test cut {seed}\0".encode("ascii")
    order = sorted(range(n), key=lambda i: hashlib.sha256(salt + os.fsencode(names[i])).digest())
    held_out = np.zeros(n, dtype=bool)
    held_out[order[:count]] = True
    return held_out


def find_layout(root, test_fraction=TEST_FRACTION, seed=0):
    """Which files of root go to which split, as the module docstring describes."""
    splits, others = _find_split_folders(root)
    if splits:
        return _split_layout(root, splits, others)
    if not others:
        raise CnnfruitError(
            f"data folder {printable(root)} has no class folders: it needs <class>/* folders, "
            "or train/<class>/* and test/<class>/*"
        )
    return _class_layout(root, others, test_fraction, seed)


# ---------------------------------------------------------------------------------------------
# reading


def _check_settings(test_fraction, seed, workers):
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise CnnfruitError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise CnnfruitError(f"seed must be an integer, 0 or more, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1):
        raise CnnfruitError(f"workers must be a whole number, 1 or more, got {workers!r}")


def read_image_folder(root, *, skip_bad=False, test_fraction=TEST_FRACTION, seed=0, cache_dir=None, workers=None,
                      progress=None):
    """Read an image folder in either layout of the module docstring into a Dataset.

    skip_bad leaves out images that cannot be decoded (counted in `skipped`, listed with their
    reasons in `loading.failures`); otherwise the first one is an error. test_fraction and seed
    cut the test split when the folder has no split folders. cache_dir: where decoded images are
    kept between loads, False for nowhere (see cnnfruit/data/cache.py for the default).
    workers: processes decoding images (default: one per processor; 1 decodes in this process,
    as do platforms other than Linux). progress(done, total) is
    called now and then, from this thread. `layout_note` says what was done with the folder when
    that is more than reading train/ and test/.
    """
    _check_settings(test_fraction, seed, workers)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise CnnfruitError(f"data folder {printable(root)} does not exist")
    layout = find_layout(root, test_fraction, seed)

    total = sum(len(files) for part in layout.parts.values() for _, files in part)
    images = np.empty((total, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)  # all splits, one after the other
    folders, paths, regions = {}, [], {}
    for split, part in layout.parts.items():
        start, labels = len(paths), []
        for label, (folder, files) in enumerate(part):
            names, rows = folders.setdefault(folder, ([], []))
            names += files
            rows += range(len(paths), len(paths) + len(files))
            prefix = os.path.join(folder, "")  # folder and a separator: 70,000 joins add up
            paths += [prefix + f.name for f in files]
            labels += [label] * len(files)
        regions[split] = (start, np.array(labels, dtype=np.int64))
    jobs = [Folder(os.path.abspath(folder), files, np.array(rows, dtype=np.int64))
            for folder, (files, rows) in folders.items()]
    stats = load_folders(jobs, images, size=IMAGE_SIZE, cache_dir=cache_dir, workers=workers,
                         stop_at_failure=not skip_bad, progress=progress)
    if stats.failures and not skip_bad:
        raise SettingError("{message} ({skip_bad} skips unreadable images)", message=stats.failures[0][2])

    unreadable = {row for row, _, _ in stats.failures}
    parts = {split: _readable_split(images, start, labels, paths, unreadable, layout.split_dirs[split])
             for split, (start, labels) in regions.items()}
    name = printable(os.path.basename(os.path.normpath(os.path.abspath(root))))
    return Dataset(name, layout.class_names, parts["train"], parts["test"], val=parts.get("val"),
                   source=os.path.abspath(root),
                   options={"skip_bad": skip_bad, "test_fraction": test_fraction, "seed": seed},
                   skipped=len(stats.failures), layout_note=layout.note, loading=stats)


def _readable_split(images, start, labels, paths, unreadable, folder):
    """The Split of images[start:start + len(labels)], its unreadable rows squeezed out in place."""
    rows = [r for r in range(start, start + len(labels)) if r not in unreadable]
    if not rows:
        raise CnnfruitError(f"data folder {printable(folder)} holds no readable images")
    for target, source in enumerate(rows, start):  # target <= source: no row is overwritten before it is read
        if target != source:
            images[target] = images[source]
    kept = np.array(rows) - start
    return Split(images[start:start + len(rows)], labels[kept], [paths[r] for r in rows])


def fingerprint(dataset):
    """A digest of a dataset's classes, pixels and labels: equal digests mean the same data."""
    digest = hashlib.sha256()
    digest.update("\n".join(dataset.class_names).encode("utf-8", "surrogateescape"))
    parts = [dataset.train, dataset.test] + ([dataset.val] if dataset.val is not None else [])
    for part in parts:
        for array in (part.images, part.labels.astype(np.int64)):
            digest.update(str(array.shape).encode("ascii"))
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
