"""The command line on data folders as people have them: other split names, class folders alone,
a val folder, many classes, and the decoded-image cache."""
import json
import os

from helpers import TINY, cli, write_images


def test_training_and_test_folders_named_as_fruits_360_names_them(tmp_path):
    for split, count in (("Training", 6), ("Test", 3)):
        for label, name in enumerate(("Kiwi", "Plum")):
            write_images(tmp_path / "data" / split / name, count, side=32, suffix="_100.png", shade=100 * label)
    result = cli("train", "--data", tmp_path / "data", *TINY, "--epochs", 1, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "8 train / 4 validation / 6 test images, classes Kiwi, Plum" in result.output


def test_class_folders_alone_get_a_test_split_that_eval_cuts_again(tmp_path):
    for label, name in enumerate(("Kiwi", "Plum", "Fig")):
        write_images(tmp_path / "data" / name, 10, side=32, suffix="_100.png", shade=70 * label)
    result = cli("train", "--data", tmp_path / "data", *TINY, "--epochs", 1, "--test-fraction", 0.3,
                 "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "/ 9 test images" in result.output  # 3 of each class's 10
    assert "test split" in result.output  # the layout note says what was done
    report = json.loads(cli("eval", tmp_path / "run" / "model.npz", "--json").stdout)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert report["images"] == 9 and report["accuracy"] == history["test_accuracy"]


def test_a_val_folder_is_the_validation_split(tmp_path):
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        for label, name in enumerate(("Kiwi", "Plum")):
            write_images(tmp_path / "data" / split / name, count, side=32, suffix="_100.png", shade=100 * label)
    result = cli("train", "--data", tmp_path / "data", *TINY, "--epochs", 1, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "12 train / 4 validation (its val folder) / 6 test images" in result.output


def test_many_classes_are_summarised(tmp_path):
    names = [f"Fruit {k:02d}" for k in range(12)]
    for label, name in enumerate(names):
        write_images(tmp_path / "data" / "train" / name, 3, side=32, suffix="_100.png", shade=15 * label)
        write_images(tmp_path / "data" / "test" / name, 1, side=32, suffix="_100.png", shade=15 * label)
    result = cli("train", "--data", tmp_path / "data", *TINY, "--epochs", 1, "--val-fraction", 0, "--out",
                 tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "12 classes: Fruit 00, Fruit 01, Fruit 02, Fruit 03, Fruit 04, Fruit 05, Fruit 06, Fruit 07 and 4 more" \
        in result.output


def test_the_cache_goes_where_it_is_told_or_nowhere(tmp_path, make_image_folder):
    data = make_image_folder(tmp_path / "data")
    for folder, _, files in os.walk(data):  # files written this very second are decoded but not cached
        for name in files:
            os.utime(os.path.join(folder, name), (1e9, 1e9))
    cache = tmp_path / "cache"
    result = cli("train", "--data", data, *TINY, "--epochs", 1, "--cache-dir", cache, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert os.listdir(cache)
    result = cli("train", "--data", data, *TINY, "--epochs", 1, "--no-cache", "--cache-dir", tmp_path / "none",
                 "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "none").exists()
