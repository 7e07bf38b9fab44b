"""Bad input of every kind: one `Error: ...` line that names the culprit, a non-zero exit, no traceback."""
import json
import shutil

import numpy as np
import pytest

from cnnfruit.checkpoint import FORMAT_VERSION

from helpers import TINY, cli, rewrite


@pytest.fixture(scope="session")
def trained(image_folder, tmp_path_factory):
    """A finished tiny run: its folder holds model.npz and history.json."""
    out = tmp_path_factory.mktemp("trained")
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def assert_error(result, message, code=1):
    assert result.exit_code == code, result.output
    assert result.output.splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


# ---------------------------------------------------------------------------------------------
# flags


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--lr", "0"], "--lr must be a positive number, got 0.0"),
    (["--lr", "-0.5"], "--lr must be a positive number, got -0.5"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--kernel-size", "33"], "--kernel-size 33 does not fit the 32x32 images: use 1 to 32"),
    (["--kernels", "0"], "--kernels must be at least 1, got 0"),
    (["--val-fraction", "1"], "--val-fraction must be in [0, 1), got 1.0"),
    (["--val-fraction", "-0.1"], "--val-fraction must be in [0, 1), got -0.1"),
    (["--seed", "-3"], "--seed must be zero or positive, got -3"),
])
def test_nonsensical_flags(tmp_path, flags, message):
    out = tmp_path / "run"
    assert_error(cli("train", *flags, "--out", out), message)
    assert not out.exists()  # checked before anything is loaded or created


def test_hidden_that_is_not_a_list_of_sizes(tmp_path):
    result = cli("train", "--hidden", "abc", "--out", tmp_path)
    assert_error(result, "Invalid value for '--hidden': 'abc' is not a comma-separated list of layer sizes, e.g. 841,29",
                 code=2)


def test_validation_share_that_leaves_no_training_images(tmp_path, image_folder):
    result = cli("train", "--data", image_folder, *TINY, "--val-fraction", "0.99", "--out", tmp_path / "run")
    assert_error(result, "--val-fraction 0.99 leaves no training images out of 24")


# ---------------------------------------------------------------------------------------------
# data folders


def test_missing_data_folder(tmp_path):
    assert_error(cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "run"),
                 f"data folder {tmp_path / 'nope'} does not exist")


def test_empty_data_folder(tmp_path):
    (tmp_path / "data").mkdir()
    assert_error(cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run"),
                 f"data folder {tmp_path / 'data'} has no class folders: it needs <class>/* folders, or train/<class>/* and test/<class>/*")


def test_data_folder_without_class_folders(tmp_path):
    for part in ("train", "test"):
        (tmp_path / "data" / part).mkdir(parents=True)
    assert_error(cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run"),
                 f"data folder {tmp_path / 'data' / 'train'} has no class folders")


def test_class_folder_without_images(tmp_path, make_image_folder):
    data = make_image_folder(tmp_path / "data")
    for image in (data / "train" / "kiwi").iterdir():
        image.unlink()
    assert_error(cli("train", "--data", data, "--out", tmp_path / "run"),
                 f"class folder {data / 'train' / 'kiwi'} holds no image files")


def test_class_folders_that_differ_between_train_and_test(tmp_path, make_image_folder):
    data = make_image_folder(tmp_path / "data")
    (data / "test" / "plum").rename(data / "test" / "pear")
    assert_error(cli("train", "--data", data, "--out", tmp_path / "run"),
                 f"class folders differ between {data / 'train'} (apple, kiwi, plum) and {data / 'test'} (apple, kiwi, pear)")


def test_corrupt_image_is_named_and_skip_bad_skips_it_with_a_count(tmp_path, make_image_folder):
    data = make_image_folder(tmp_path / "data")
    bad = data / "train" / "kiwi" / "3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing that decodes")
    assert_error(cli("train", "--data", data, *TINY, "--out", tmp_path / "run"),
                 f"cannot read image {bad}: not an image format Pillow can decode (--skip-bad skips unreadable images)")
    result = cli("train", "--data", data, *TINY, "--epochs", 1, "--skip-bad", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"Skipped 1 unreadable image(s) in {data}" in result.output.splitlines()
    assert "Training on data: 16 train / 7 validation / 9 test images" in result.output  # 23 of the 24 kept


# ---------------------------------------------------------------------------------------------
# output folders


def test_output_folder_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_error(cli("train", *TINY, "--out", tmp_path / "file" / "run"),
                 f"cannot create output folder {tmp_path / 'file' / 'run'}: Not a directory")


def test_output_folder_that_cannot_be_created(tmp_path):
    # /proc refuses new entries even to root, for whom permission bits do not stop writes
    assert_error(cli("train", *TINY, "--out", "/proc/cnnfruit-run"),
                 "cannot create output folder /proc/cnnfruit-run: No such file or directory")


# ---------------------------------------------------------------------------------------------
# checkpoints: eval, predict and train --resume all read them through checkpoint.load


def bad_checkpoints(model, folder):
    """(path, message) for each kind of broken checkpoint."""
    text = folder / "text.npz"
    text.write_text("a text file, not an archive")
    truncated = folder / "truncated.npz"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    flipped = folder / "flipped.npz"
    data = bytearray(model.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside an array's bytes: the zip's CRC check catches it
    flipped.write_bytes(bytes(data))
    npy = folder / "array.npz"
    np.save(folder / "array.npy", np.zeros(3))
    (folder / "array.npy").rename(npy)

    def newer(a):
        a["format_version"] = np.array(FORMAT_VERSION + 1)

    def no_weights(a):
        del a["param_dense0_w"]

    def wrong_shape(a):
        a["param_conv_w"] = a["param_conv_w"][:, :, :4, :4].copy()

    def bad_json(a):
        a["train_config"] = np.array("{not json")

    def text_version(a):
        a["format_version"] = np.array("one")

    not_readable = "is not a cnnfruit checkpoint: not an .npz archive, or a truncated one"
    return [
        (folder / "missing.npz", f"checkpoint {folder / 'missing.npz'} does not exist"),
        (text, f"{text} {not_readable}"),
        (truncated, f"{truncated} {not_readable}"),
        (npy, f"{npy} {not_readable}"),
        (flipped, f"{flipped} is not a readable cnnfruit checkpoint: Bad CRC-32 for file 'param_dense0_w.npy'"),
        (rewrite(model, folder / "newer.npz", newer),
         f"{folder / 'newer.npz'} has checkpoint format {FORMAT_VERSION + 1}, newer than this cnnfruit reads "
         f"({FORMAT_VERSION}); upgrade cnnfruit"),
        (rewrite(model, folder / "no_weights.npz", no_weights),
         f"checkpoint {folder / 'no_weights.npz'} lacks the array param_dense0_w"),
        (rewrite(model, folder / "wrong_shape.npz", wrong_shape),
         f"checkpoint {folder / 'wrong_shape.npz'} cannot be used: param_conv_w has shape (2, 1, 4, 4), the "
         "architecture needs (2, 1, 5, 5)"),
        (rewrite(model, folder / "bad_json.npz", bad_json),
         f"checkpoint {folder / 'bad_json.npz'} cannot be used: train_config is not valid JSON: Expecting property "
         "name enclosed in double quotes: line 1 column 2 (char 1)"),
        (rewrite(model, folder / "text_version.npz", text_version),
         f"{folder / 'text_version.npz'} is not a cnnfruit checkpoint (format_version is not an integer)"),
    ]


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_broken_checkpoints(tmp_path, trained, image_folder, command):
    image = image_folder / "test" / "kiwi" / "0.png"
    for path, message in bad_checkpoints(trained / "model.npz", tmp_path):
        args = {
            "eval": ["eval", path, "--data", image_folder],
            "predict": ["predict", path, image],
            "resume": ["train", "--resume", path, "--epochs", 5],
        }[command]
        assert_error(cli(*args), message)


def test_eval_with_data_whose_classes_differ(tmp_path, trained, make_image_folder):
    other = make_image_folder(tmp_path / "data", classes=("fig", "kiwi", "plum"))
    assert_error(cli("eval", trained / "model.npz", "--data", other),
                 f"the data's classes (fig, kiwi, plum) differ from those of {trained / 'model.npz'} (apple, kiwi, plum)")


def test_predict_input_that_is_not_an_image(tmp_path, trained):
    """Each unreadable file is named; the count ends the output (tests/test_hostile_inputs.py has more)."""
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list")
    result = cli("predict", trained / "model.npz", notes, tmp_path / "gone.png")
    assert result.output.splitlines()[:2] == [
        f"cannot read image {notes}: not an image format Pillow can decode",
        f"cannot read image {tmp_path / 'gone.png'}: No such file or directory"]
    assert_error(result, "none of the 2 images could be read")


# ---------------------------------------------------------------------------------------------
# history files


def test_plot_of_a_good_history(tmp_path, trained):
    shutil.copy(trained / "history.json", tmp_path / "history.json")
    result = cli("plot", tmp_path / "history.json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, problem", [
    ('{"epochs": [', "is not valid JSON: Expecting value: line 1 column 13 (char 12)"),
    ("[1, 2]", "is not a cnnfruit history: it needs a list of epochs with epoch, train_loss, train_accuracy"),
    ('{"epochs": []}', "holds no finished epoch to plot"),
    ('{"epochs": [{"epoch": 1, "train_loss": 0.5}]}',
     "is not a cnnfruit history: it needs a list of epochs with epoch, train_loss, train_accuracy"),
    ('{"epochs": [{"epoch": 1, "train_loss": "low", "train_accuracy": 0.5}]}',
     "is not a cnnfruit history: epoch 1 has a train_loss that is not a number from 0 to 1e+39"),
    ('{"epochs": [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.5, "val_loss": [1]}]}',
     "is not a cnnfruit history: epoch 1 has a val_loss that is not a number from 0 to 1e+39"),
])
def test_malformed_history(tmp_path, content, problem):
    history = tmp_path / "history.json"
    history.write_text(content)
    assert_error(cli("plot", history), f"{history} {problem}")
    assert not (tmp_path / "history.png").exists()


def test_history_that_is_not_text(tmp_path):
    history = tmp_path / "history.json"
    history.write_bytes(b"\xff\xfe\x00binary")
    result = cli("plot", history)
    assert result.exit_code == 1 and result.output.startswith(f"Error: cannot read {history}: 'utf-8' codec")


def test_history_json_written_by_train_round_trips(trained):
    history = json.loads((trained / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1] and "test_accuracy" in history


def test_plot_to_a_folder_that_cannot_exist(tmp_path, trained):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "history.png"
    assert_error(cli("plot", trained / "history.json", "-o", target), f"cannot write {target}: Not a directory")
