"""Pictures: history curves, kernels, feature maps and confusion matrices, as Figures and as files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnfruit.cli import main

from test_classifier import saved_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("color", ["grey", "rgb"])
def test_model_pictures_are_written(rng, tmp_path, color):
    path, _ = saved_model(rng, tmp_path, color, "scale")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(photo)
    runner = CliRunner()
    outputs = {
        "k.png": ["plot", path, "--kernels", "-o", str(tmp_path / "k.png")],
        "f.png": ["plot", path, "--feature-maps", str(photo), "-o", str(tmp_path / "f.png")],
        "cm.png": ["eval", path, "--plot", str(tmp_path / "cm.png")],
    }
    for name, args in outputs.items():
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert f"Wrote {tmp_path / name}" in result.output
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_the_kernels_and_maps_of_any_conv_layer_of_a_stack(rng, tmp_path):
    from cnnfruit.inference.classifier import Classifier
    from cnnfruit.nn.architecture import Architecture, init_parameters

    arch = Architecture(in_channels=3, layers="conv20x3 same, maxpool2, conv5x3, dense8", classes=3)
    path = tmp_path / "stack.npz"
    Classifier(arch, init_parameters(arch, rng), ["a", "b", "c"], "rgb", "scale").save(str(path))
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(photo)
    runner = CliRunner()
    kernels = runner.invoke(main, ["plot", str(path), "--kernels", "-o", str(tmp_path / "k.png")])
    assert kernels.exit_code == 0, kernels.output
    for layer in ("conv1", "1", "conv0"):
        maps = runner.invoke(main, ["plot", str(path), "--feature-maps", str(photo), "--layer", layer, "-o",
                                    str(tmp_path / f"f{layer}.png")])
        assert maps.exit_code == 0, maps.output
        assert (tmp_path / f"f{layer}.png").read_bytes()[:8] == PNG_MAGIC
    clf = Classifier.load(str(path))
    assert clf.feature_maps(str(photo), "conv1").shape == (5, 14, 14)
    assert clf.feature_maps(str(photo)).shape == (20, 32, 32)
    for layer, message in (("conv2", "the network has no conv layer 'conv2'; its conv layers: conv0, conv1"),
                           ("7", "conv layer 7 is not one of the network's 2 (0 to 1, or by name: conv0, conv1)")):
        wrong = runner.invoke(main, ["plot", str(path), "--feature-maps", str(photo), "--layer", layer])
        assert wrong.exit_code == 1 and f"Error: {message}" in wrong.output, wrong.output
    alone = runner.invoke(main, ["plot", str(path), "--kernels", "--layer", "conv1"])
    assert alone.exit_code == 1 and "--layer chooses the conv layer of --feature-maps" in alone.output


def test_plot_of_a_model_needs_one_picture_choice(rng, tmp_path):
    path, _ = saved_model(rng, tmp_path, "grey", "none")
    result = CliRunner().invoke(main, ["plot", path])
    assert result.exit_code == 1
    assert "choose one of --kernels or --feature-maps" in result.output
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"epochs": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}]}))
    result = CliRunner().invoke(main, ["plot", str(history), "--kernels"])
    assert result.exit_code == 1
    assert "need a model .npz file" in result.output


def test_plotting_a_history_does_not_import_numba(tmp_path):
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"epochs": [
        {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
        {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7},
    ]}))
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cnnfruit.cli import main\n"
        f"result = CliRunner().invoke(main, ['plot', {str(history)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('numba' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.stdout.strip() == "False"
    assert (tmp_path / "history.png").read_bytes()[:8] == PNG_MAGIC


def test_pictures_go_to_the_current_folder_unless_told(rng, tmp_path, monkeypatch):
    """explain and plot write beside the user, not beside their input (a data set may be shared or
    read-only), and say what they wrote."""
    shared = tmp_path / "shared"
    shared.mkdir()
    path, _ = saved_model(rng, shared, "grey", "scale")
    photo = shared / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(photo)
    history = shared / "history.json"
    history.write_text(json.dumps({"epochs": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}]}))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    before = sorted(os.listdir(shared))
    stem = os.path.splitext(os.path.basename(path))[0]
    for args, written in ((["explain", path, str(photo)], "photo-explained.png"),
                          (["plot", str(history)], "history.png"),
                          (["plot", path, "--kernels"], f"{stem}-kernels.png"),
                          (["plot", path, "--feature-maps", str(photo)], f"{stem}-features.png")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1] == f"Wrote {written}"
        assert (here / written).read_bytes()[:8] == PNG_MAGIC
    assert sorted(os.listdir(shared)) == before



def test_figures_are_returned_without_touching_pyplot_or_the_backend(tmp_path):
    """Notebooks keep their inline backend: building and saving a figure neither picks a backend
    nor imports pyplot, and the figure object is handed back to be shown or saved."""
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.get_backend() if 'matplotlib.pyplot' in sys.modules else None\n"
        "import numpy as np, cnnfruit\n"
        "from cnnfruit import plots\n"
        "history = cnnfruit.History(epochs=[cnnfruit.EpochRecord(1, 1.0, 0.5, 1.1, 0.4)])\n"
        "figures = [plots.history_figure(history), plots.kernels_figure(np.ones((2, 3, 4, 4))),\n"
        "           plots.kernels_figure(np.ones((20, 3, 3, 3))), plots.kernels_figure(np.ones((33, 2, 3, 3))),\n"
        "           plots.feature_maps_figure(np.zeros((8, 8)), np.ones((3, 5, 5))),\n"
        "           plots.confusion_figure([[1, 2], [3, 4]], ['a', 'b'])]\n"
        f"plots.save_figure(figures[0], {str(tmp_path / 'h.png')!r})\n"
        "from matplotlib.figure import Figure\n"
        "shown = figures[0]._repr_png_()\n"
        "print(all(isinstance(f, Figure) for f in figures), shown[:4] == b'\\x89PNG', 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC


def history_of(epochs, accuracy=1.0):
    import cnnfruit

    return cnnfruit.History(epochs=[cnnfruit.EpochRecord(e, 1.0 / e, accuracy, 1.1 / e, accuracy)
                                    for e in range(1, epochs + 1)])


def test_ipython_displays_a_figure_as_a_png_without_the_inline_backend():
    """What a notebook cell does with a figure as its last value: IPython's formatters, with no
    `%matplotlib inline`, give an image/png (a plain Figure gives only its text)."""
    formatters = pytest.importorskip("IPython.core.formatters")
    from cnnfruit import plots

    data, _ = formatters.DisplayFormatter().format(plots.history_figure(history_of(3)))
    assert data["image/png"][:8] == PNG_MAGIC


def test_figures_nobody_holds_are_freed():
    """Made in a loop, figures do not pile up as pyplot's would until plt.close."""
    import gc
    import weakref

    from cnnfruit import plots

    alive = []
    for _ in range(5):
        fig = plots.history_figure(history_of(2))
        fig._repr_png_()
        alive.append(weakref.ref(fig))
        del fig
    gc.collect()
    assert [ref() for ref in alive] == [None] * 5


def test_history_ticks_are_whole_epochs_and_markers_at_100_percent_are_inside():
    from cnnfruit import plots

    fig = plots.history_figure(history_of(3, accuracy=1.0))
    loss_ax, acc_ax = fig.axes[:2]
    for ax in (loss_ax, acc_ax):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    low, high = acc_ax.get_ylim()
    assert low < 0 and high > 100  # a marker's radius of room at 0% and 100%
    assert 0 in acc_ax.get_yticks() and 100 in acc_ax.get_yticks()


def test_the_package_reaches_plots_and_explain_as_the_readme_writes_them():
    """`import cnnfruit` alone, then cnnfruit.plots.history_figure and cnnfruit.explain: both load on
    first use, and importing the package loads neither matplotlib nor numpy."""
    code = (
        "import sys, cnnfruit\n"
        "light = not any(m in sys.modules for m in ('matplotlib', 'numpy', 'numba'))\n"
        "print(light, callable(cnnfruit.plots.history_figure), callable(cnnfruit.explain),\n"
        "      cnnfruit.explain.__module__, 'plots' in dir(cnnfruit))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True", "cnnfruit.inference.explain", "True"]
