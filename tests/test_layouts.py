"""read_image_folder on folders as people have them: split names, no splits, val, odd names."""
import os

import numpy as np
import pytest

from cnnfruit.data import datasets as data
from cnnfruit.data.datasets import fingerprint, hold_out, read_image_folder
from cnnfruit.errors import CnnfruitError

from helpers import class_folders, split_folders, write_images


def read(root, **options):
    return read_image_folder(root, cache_dir=False, **options)


def error_of(root, **options):
    with pytest.raises(CnnfruitError) as error:
        read(root, **options)
    return str(error.value)


def names(split):
    return [os.path.relpath(path, os.path.dirname(os.path.dirname(path))) for path in split.paths]


# ---------------------------------------------------------------------------------------------
# split folders


@pytest.mark.parametrize("train, test", [("train", "test"), ("Training", "Test"), ("TRAIN", "testing"),
                                         ("training", "TEST")])
def test_split_folder_names_in_any_case_and_their_long_forms(tmp_path, train, test):
    root = split_folders(tmp_path / "fruits", splits=(train, test))
    dataset = read(root)
    assert dataset.class_names == ["apple", "kiwi"] and dataset.val is None
    assert dataset.train.labels.tolist() == [0] * 4 + [1] * 4 and dataset.test.labels.tolist() == [0, 0, 1, 1]
    assert all(f"{os.sep}{train}{os.sep}" in path for path in dataset.train.paths)
    assert all(f"{os.sep}{test}{os.sep}" in path for path in dataset.test.paths)
    if (train, test) == ("train", "test"):
        assert dataset.layout_note == ""  # the plain layout: nothing worth saying
    else:
        assert dataset.layout_note == f"{root}: read {train}/ as train, {test}/ as test"


@pytest.mark.parametrize("val", ["val", "Validation", "valid"])
def test_a_val_folder_is_a_third_split(tmp_path, val):
    root = split_folders(tmp_path / "fruits", splits=("train", "test", val), per_class=(4, 2, 3))
    dataset = read(root)
    assert len(dataset.train) == 8 and len(dataset.test) == 4
    assert dataset.val.labels.tolist() == [0, 0, 0, 1, 1, 1] and dataset.val.images.shape == (6, 32, 32, 3)
    assert all(f"{os.sep}{val}{os.sep}" in path for path in dataset.val.paths)
    assert dataset.layout_note == f"{root}: read train/ as train, test/ as test, {val}/ as val"


def test_val_changes_the_fingerprint_and_its_absence_keeps_the_old_one(tmp_path):
    plain = read(split_folders(tmp_path / "a"))
    with_val = read(split_folders(tmp_path / "b", splits=("train", "test", "val")))
    assert fingerprint(plain) != fingerprint(with_val)
    with_val.val = None  # the train and test parts of the two folders are the same images
    assert fingerprint(plain) == fingerprint(with_val)


def test_splits_are_views_of_one_array_without_copies(tmp_path):
    dataset = read(split_folders(tmp_path / "fruits", splits=("train", "test", "val")))
    base = dataset.train.images.base
    assert base is not None and dataset.test.images.base is base and dataset.val.images.base is base


def test_folders_beside_the_split_folders_are_left_out_and_named(tmp_path):
    root = split_folders(tmp_path / "fruits-360", splits=("Training", "Test"))
    write_images(root / "test-multiple_fruits", 3)  # as the real Fruits-360 has
    (root / "papers").mkdir()
    (root / "papers" / "paper.pdf").write_bytes(b"%PDF")
    (root / "readme.md").write_text("Fruits-360")
    dataset = read(root)
    assert len(dataset.train) == 8 and len(dataset.test) == 4
    assert dataset.layout_note == (f"{root}: read Training/ as train, Test/ as test; "
                                   "left out papers/, test-multiple_fruits/ (not split folders)")


def test_two_folders_for_one_split(tmp_path):
    root = split_folders(tmp_path / "fruits", splits=("train", "test", "Training"))
    assert error_of(root) == f"data folder {root} has both Training/ and train/ as its train folder; keep one"


def test_a_class_folder_beside_the_split_folders(tmp_path):
    root = split_folders(tmp_path / "fruits")
    write_images(root / "Kiwi", 2)
    assert error_of(root) == f"data folder {root} has a class folder Kiwi/ beside its split folders; move it into them"


def test_a_split_named_folder_of_images_beside_class_folders(tmp_path):
    root = class_folders(tmp_path / "fruits", classes=("apple", "kiwi", "Test"))
    assert error_of(root) == (f"data folder {root} is ambiguous: Test/ holds images like its class folders but is "
                              "named like the test split; rename it, or put the class folders in train/ and test/")


def test_a_missing_test_folder(tmp_path):
    root = split_folders(tmp_path / "fruits", splits=("train",))
    assert error_of(root) == f"data folder {root} has no test/ folder: it needs train/<class>/* and test/<class>/*"


def test_val_classes_must_match(tmp_path):
    root = split_folders(tmp_path / "fruits", splits=("train", "test"))
    split_folders(root, splits=("val",), classes=("apple", "pear"))
    assert error_of(root) == (f"class folders differ between {root / 'train'} (apple, kiwi) "
                              f"and {root / 'val'} (apple, pear)")


# ---------------------------------------------------------------------------------------------
# class folders alone: a seeded, stratified test split


def test_class_folders_alone_get_a_stratified_test_split(tmp_path):
    root = class_folders(tmp_path / "fruits", per_class=10)
    dataset = read(root)
    assert np.bincount(dataset.test.labels).tolist() == [2, 2, 2]  # 0.2 of each class
    assert np.bincount(dataset.train.labels).tolist() == [8, 8, 8]
    assert not set(dataset.train.paths) & set(dataset.test.paths)
    assert len(set(dataset.train.paths) | set(dataset.test.paths)) == 30
    assert dataset.val is None
    assert dataset.layout_note == (f"{root} has no train/ and test/ folders: held out 6 of its 30 images as "
                                   "the test split, 0.2 of each class (seed 0)")
    assert dataset.options == {"skip_bad": False, "test_fraction": 0.2, "seed": 0}
    again = read(root)
    assert again.test.paths == dataset.test.paths and fingerprint(again) == fingerprint(dataset)


def test_the_cut_follows_seed_and_test_fraction(tmp_path):
    root = class_folders(tmp_path / "fruits", per_class=20)
    cuts = {seed: read(root, seed=seed).test.paths for seed in range(4)}
    assert len({tuple(paths) for paths in cuts.values()}) == 4
    assert np.bincount(read(root, test_fraction=0.5).test.labels).tolist() == [10, 10, 10]


def test_the_cut_is_at_least_one_and_never_all_of_a_class(tmp_path):
    assert hold_out(["a", "b"], 0.01, 0).sum() == 1
    assert hold_out(["a", "b", "c"], 0.99, 0).sum() == 2
    root = class_folders(tmp_path / "fruits", classes=("apple", "kiwi"), per_class=2)
    assert np.bincount(read(root).test.labels).tolist() == [1, 1]


def test_adding_a_photo_moves_at_most_one_other_between_train_and_test(tmp_path):
    before = hold_out([f"{i}.jpg" for i in range(50)], 0.2, 3)
    after = hold_out([f"{i}.jpg" for i in range(51)], 0.2, 3)
    assert before.sum() == after.sum() == 10
    assert np.sum(before != after[:50]) <= 1


def test_a_class_of_one_image_cannot_be_cut(tmp_path):
    root = class_folders(tmp_path / "fruits", per_class=3)
    for path in list((root / "kiwi").iterdir())[1:]:
        path.unlink()
    assert error_of(root) == (f"class folder {root / 'kiwi'} has only 1 image: cutting a test split needs at "
                              "least 2 in every class")


@pytest.mark.parametrize("value", [0, 1, 2, -0.1, float("nan"), "0.2", True])
def test_test_fraction_must_be_a_fraction(tmp_path, value):
    assert error_of(tmp_path, test_fraction=value) == f"test_fraction must be in (0, 1), got {value!r}"


@pytest.mark.parametrize("option, value, message", [
    ("seed", -1, "seed must be an integer, 0 or more, got -1"),
    ("seed", 1.5, "seed must be an integer, 0 or more, got 1.5"),
    ("workers", 0, "workers must be a whole number, 1 or more, got 0"),
])
def test_other_settings_are_checked_by_name(tmp_path, option, value, message):
    assert error_of(tmp_path, **{option: value}) == message


# ---------------------------------------------------------------------------------------------
# names and counts of class folders


def test_an_empty_folder(tmp_path):
    assert error_of(tmp_path) == (f"data folder {tmp_path} has no class folders: it needs <class>/* folders, "
                                  "or train/<class>/* and test/<class>/*")


@pytest.mark.parametrize("layout", ["classes", "splits"])
def test_one_class_is_refused_naming_the_data(tmp_path, layout):
    if layout == "classes":
        root, folder = class_folders(tmp_path / "fruits", classes=("Lychee",)), tmp_path / "fruits"
    else:
        root = split_folders(tmp_path / "fruits", classes=("Lychee",))
        folder = root / "train"
    assert error_of(root) == f"data folder {folder} has one class folder (Lychee): a classifier needs at least 2"


@pytest.mark.parametrize("layout", ["classes", "splits"])
def test_a_class_name_that_is_not_utf8(tmp_path, layout):
    root = split_folders(tmp_path / "fruits") if layout == "splits" else class_folders(tmp_path / "fruits")
    parent = os.fsencode(root / "train" if layout == "splits" else root)
    os.rename(os.path.join(parent, b"apple"), os.path.join(parent, b"Pear\xff"))
    if layout == "splits":
        os.rename(os.fsencode(root / "test" / "apple"), os.fsencode(root / "test") + b"/Pear\xff")
    shown = f"{os.fsdecode(parent)}/Pear\\xff"
    assert error_of(root) == f"class folder {shown} has a name that is not valid UTF-8; rename it"


@pytest.mark.parametrize("name, shown", [("Pear\nLychee", "Pear\\nLychee"), ("\x1b[31mPear", "\\x1b[31mPear"),
                                         ("Pear\u202eraeP", "Pear\\u202eraeP")])
def test_a_class_name_with_a_control_character(tmp_path, name, shown):
    root = class_folders(tmp_path / "fruits")
    (root / "apple").rename(root / name)
    assert error_of(root) == (f"class folder {root}/{shown} has a control character (such as a newline) in its "
                              "name; rename it")


def test_a_folder_that_cannot_be_listed_is_named(tmp_path):
    not_a_folder = class_folders(tmp_path / "fruits") / "kiwi" / "0.png"  # root may read any folder
    with pytest.raises(CnnfruitError) as error:
        data._image_files(not_a_folder)
    assert str(error.value) == f"cannot list folder {not_a_folder}: Not a directory"


def test_names_that_are_merely_unusual_are_fine(tmp_path):
    root = class_folders(tmp_path / "fruits", classes=("Äpfel süß", "[red]Lychee", "Pear 2 (ripe)"))
    assert read(root).class_names == ["Pear 2 (ripe)", "[red]Lychee", "Äpfel süß"]


def test_fingerprint_never_fails_on_odd_class_names(tmp_path):
    dataset = read(class_folders(tmp_path / "fruits"))
    dataset.class_names = ["Pear\udcff", "a\nb", "c"]  # what a caller might build by hand
    assert len(fingerprint(dataset)) == 64


def test_layout_module_names_the_split_folder_names():
    assert set(data.SPLIT_FOLDER_NAMES.values()) == set(data.SPLITS)
