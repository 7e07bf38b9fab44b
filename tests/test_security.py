"""Nothing is ever unpickled, and no input is evaluated as code."""
import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from helpers import TINY, cli, saved_arrays

ROOT = Path(__file__).resolve().parents[1]


class RunsCommand:
    """Unpickling this runs a shell command: the payload of a malicious file."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def payload(marker):
    return np.array([RunsCommand(f"touch {marker}")], dtype=object)


@pytest.fixture(scope="module")
def model(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    return out / "model.npz"


def test_the_payload_would_run_if_unpickled(tmp_path):
    """Proof that the tests below would notice: loading unsafely does create the marker."""
    marker = tmp_path / "ran"
    np.savez(tmp_path / "evil.npz", evil=payload(marker))
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as z:
        z["evil"]
    assert marker.exists()


def evil_files(model, folder, marker):
    """A real checkpoint with one array swapped for a pickled object, and a bare pickle."""
    arrays = saved_arrays(model)
    arrays["train_history"] = payload(marker)
    np.savez(folder / "evil.npz", **arrays)
    with open(folder / "pickle.npz", "wb") as f:
        pickle.dump({"params": payload(marker)}, f)
    return {
        folder / "evil.npz": f"{folder / 'evil.npz'} holds pickled Python objects; cnnfruit never unpickles files, "
                             "refusing it",
        folder / "pickle.npz": f"{folder / 'pickle.npz'} is not a cnnfruit checkpoint: not an .npz archive, "
                               "or a truncated one",
    }


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_pickled_objects_are_refused_and_never_run(tmp_path, model, image_folder, command):
    marker = tmp_path / "ran"
    for path, message in evil_files(model, tmp_path, marker).items():
        args = {
            "eval": ["eval", path, "--data", image_folder],
            "predict": ["predict", path, image_folder / "test" / "kiwi" / "0.png"],
            "resume": ["train", "--resume", path, "--epochs", 3],
        }[command]
        result = cli(*args)
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == f"Error: {message}"
        assert not marker.exists()


def source_trees():
    for folder in ("cnnfruit", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def test_every_np_load_refuses_pickles():
    loads = 0
    for path, tree in source_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "np":
                loads += 1
                settings = {k.arg: k.value for k in node.keywords}
                assert "allow_pickle" in settings, f"{path}:{node.lineno} np.load without allow_pickle=False"
                assert isinstance(settings["allow_pickle"], ast.Constant) and settings["allow_pickle"].value is False
    assert loads >= 2  # checkpoint.load and data.load_embedded at least


def test_no_eval_exec_or_pickle_modules():
    for path, tree in source_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "compile", "__import__"}, f"{path}:{node.lineno}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"pickle", "marshal", "shelve", "dill", "cloudpickle"} & set(names), f"{path}:{node.lineno}"
