"""Figures: each function builds a matplotlib Figure and returns it; save_figure writes one to a file.

Figures are made with matplotlib's object API (matplotlib.figure.Figure), not pyplot, so no
backend is chosen or changed here, nothing opens a window, and a figure nobody holds is freed like
any object (pyplot would keep every figure it made until closed). Returned as the last value of a
notebook cell, a figure shows itself as a PNG (InlineFigure), with no `%matplotlib` needed.
"""
import io
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnfruit.errors import CnnfruitError
from cnnfruit.files import write_atomically

# What a figure file may be, by its suffix: matplotlib writes each of these itself.
FORMATS = ("png", "jpg", "jpeg", "svg", "pdf")

# The confusion matrix grows with the square of the class count: 131 classes once took 62 s, 9 GB
# and a 17087 x 15408 PNG. Past NUMBERED_CLASSES the cells lose their numbers (they would be
# specks), past CONFUSION_MAX_TICKS classes only every k-th gets a label, and the figure never
# grows past CONFUSION_MAX_INCHES a side.
NUMBERED_CLASSES = 30
CONFUSION_MAX_TICKS = 40
CONFUSION_MAX_INCHES = 14
LABEL_LENGTH = 24  # longer class names are cut, with an ellipsis


class InlineFigure(Figure):
    """A matplotlib Figure that IPython and Jupyter display as a PNG image.

    Jupyter shows a plain Figure as text (`<Figure size 1000x400 with 2 Axes>`) unless pyplot's
    inline backend is switched on; this one renders itself through `_repr_png_`, which IPython
    asks of every displayed object. Everything else is the plain Figure: savefig, axes, and the
    inline backend's own drawing when the user has switched it on (IPython then prefers it).
    """

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def figure_format(path):
    """The format the file name asks for ("png", "jpg", ...); CnnfruitError for a suffix not in FORMATS."""
    suffix = os.path.splitext(str(path))[1].lower().lstrip(".")
    if suffix not in FORMATS:
        choices = ", ".join(f".{f}" for f in FORMATS[:-1]) + f" or .{FORMATS[-1]}"
        raise CnnfruitError(f"cannot write {path}: name a {choices} file")
    return suffix


def save_figure(fig, path):
    """Write fig at path in the format its suffix names, atomically (a failed write leaves any old file as it was)."""
    fmt = figure_format(path)
    write_atomically(path, lambda temporary: fig.savefig(temporary, dpi=120, format=fmt, bbox_inches="tight"))


# 0 to 100% with room for a marker's radius at either end, where a run often sits (100% validation)
ACCURACY_LIMITS = (-3, 103)


def history_figure(history):
    """The report's figure from a History: loss per epoch, and accuracy beside it.

    A run whose learning rate moved (any --lr-schedule but constant) gets a third panel: the rate
    each epoch started at.
    """
    epochs = [e.epoch for e in history.epochs]
    scheduled = history.hyperparameters.get("lr_schedule", "constant") != "constant" and all(
        e.lr is not None for e in history.epochs)
    fig = InlineFigure(figsize=(15 if scheduled else 10, 4))
    axes = fig.subplots(1, 3 if scheduled else 2)
    loss_ax, acc_ax = axes[:2]
    loss_ax.plot(epochs, [e.train_loss for e in history.epochs], "o-", label="Training")
    acc_ax.plot(epochs, [100 * e.train_accuracy for e in history.epochs], "o-", label="Training")
    if all(e.val_loss is not None for e in history.epochs):
        loss_ax.plot(epochs, [e.val_loss for e in history.epochs], "s-", label="Validation")
        acc_ax.plot(epochs, [100 * e.val_accuracy for e in history.epochs], "s-", label="Validation")
    if history.test_accuracy is not None:
        acc_ax.axhline(100 * history.test_accuracy, color="grey", linestyle="--",
                       label=f"Test ({100 * history.test_accuracy:.1f}%)")
    loss_ax.set(xlabel="Epoch", ylabel="Loss (mean cross-entropy per image)", title="Loss")
    acc_ax.set(xlabel="Epoch", ylabel="Accuracy (%)", title="Accuracy", ylim=ACCURACY_LIMITS)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.25
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    hp = history.hyperparameters
    title = f"{history.dataset}: lr {hp.get('lr')}, batch {hp.get('batch_size')}, seed {history.seed}"
    if scheduled:
        lr_ax = axes[2]
        lr_ax.plot(epochs, [e.lr for e in history.epochs], "o-", color="tab:green")
        lr_ax.set(xlabel="Epoch", ylabel="Learning rate at the epoch's first step", title="Learning rate",
                  ylim=(0, None))
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        lr_ax.grid(alpha=0.3)
        title += f", {hp['lr_schedule']} schedule"
    # Names are drawn as written: a "$" would otherwise start matplotlib's mathtext, which can fail.
    fig.suptitle(title, parse_math=False)
    fig.tight_layout()
    return fig


def _hide_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])


KERNELS_PER_ROW = 16  # kernels_figure wraps wider layers into blocks of this many columns


def kernels_figure(conv_w, title="Learned conv kernels"):
    """The conv kernels (K, C, S, S) as a grid: one column per kernel, one row per input channel,
    in blocks of KERNELS_PER_ROW kernels one under the other.

    All panels share one blue-white-red scale centred on zero, so their weights compare directly.
    With three channels a last row shows each kernel as a colour patch, each kernel stretched to
    the full 0..1 range, where the colour a kernel responds to is visible at a glance.
    """
    K, C = conv_w.shape[:2]
    channel_names = ["grey"] if C == 1 else ["red", "green", "blue"] if C == 3 else [f"channel {c}" for c in range(C)]
    per_block = C + (1 if C == 3 else 0)
    columns, blocks = min(K, KERNELS_PER_ROW), -(-K // KERNELS_PER_ROW)
    rows = per_block * blocks
    limit = float(np.abs(conv_w).max()) or 1.0
    fig = InlineFigure(figsize=(1.3 * columns + 1.2, 1.35 * rows + 0.7))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes[:, :].ravel():
        ax.set_visible(False)
    for k in range(K):
        top, column = per_block * (k // columns), k % columns
        for c in range(C):
            ax = axes[top + c, column]
            ax.set_visible(True)
            image = ax.imshow(conv_w[k, c], cmap="RdBu_r", vmin=-limit, vmax=limit)
            _hide_ticks(ax)
            if column == 0:
                ax.set_ylabel(channel_names[c])
        axes[top, column].set_title(f"kernel {k}", fontsize=9)
        if C == 3:
            ax = axes[top + C, column]
            ax.set_visible(True)
            patch = conv_w[k].transpose(1, 2, 0)
            span = patch.max() - patch.min()
            ax.imshow((patch - patch.min()) / (span if span > 0 else 1))
            _hide_ticks(ax)
            if column == 0:
                ax.set_ylabel("colour")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    fig.suptitle(title, parse_math=False)  # file and class names are drawn as written
    return fig


def feature_maps_figure(image, maps, title="Feature maps"):
    """The network's input for one image beside the K ReLU maps (K, P, Q) a conv layer made.

    image is (H, W) for grey input or (H, W, 3) uint8 for colour. Every map shares one colour
    scale from zero to the largest activation, so a dark map is a kernel that barely fired.
    """
    K = len(maps)
    columns = min(K + 1, 5)
    rows = -(-(K + 1) // columns)
    fig = InlineFigure(figsize=(2.1 * columns + 0.8, 2.2 * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    first = axes[0, 0]
    first.set_visible(True)
    first.imshow(image, cmap="gray" if image.ndim == 2 else None)
    first.set_title("input", fontsize=9)
    _hide_ticks(first)
    top = float(maps.max()) or 1.0
    for k in range(K):
        ax = axes.ravel()[k + 1]
        ax.set_visible(True)
        shown = ax.imshow(maps[k], cmap="viridis", vmin=0, vmax=top)
        ax.set_title(f"kernel {k} (max {maps[k].max():.3g})", fontsize=9)
        _hide_ticks(ax)
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="ReLU output")
    fig.suptitle(title, parse_math=False)  # file and class names are drawn as written
    return fig


def confusion_figure(matrix, class_names, title="Confusion matrix"):
    """Counts (M, M), row = true class, column = predicted class, as a heat map; with the numbers
    in the cells for up to NUMBERED_CLASSES classes. Bounded in size for any M (see above)."""
    matrix = np.asarray(matrix)
    M = len(class_names)
    side = min(1.2 * M + 2.8, CONFUSION_MAX_INCHES)
    fig = InlineFigure(figsize=(side, min(1.1 * M + 2.2, CONFUSION_MAX_INCHES)))
    ax = fig.subplots()
    shown = ax.imshow(matrix, cmap="Blues", vmin=0, interpolation="nearest")
    if M <= NUMBERED_CLASSES:
        threshold = matrix.max() / 2
        for i in range(M):
            for j in range(M):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9 if M <= 15 else 6,
                        color="white" if matrix[i, j] > threshold else "black")
    step = -(-M // CONFUSION_MAX_TICKS)
    ticks = range(0, M, step)
    labels = [_label(class_names[k]) for k in ticks]
    fontsize = 10 if M <= 15 else 7
    ax.set_xticks(ticks, labels, rotation=30 if M <= 15 else 90, ha="right" if M <= 15 else "center",
                  fontsize=fontsize, parse_math=False)
    ax.set_yticks(ticks, labels, fontsize=fontsize, parse_math=False)
    every = "" if step == 1 else f" (every {_ordinal(step)} class named)"
    ax.set(xlabel="Predicted class" + every, ylabel="True class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title}\naccuracy {100 * accuracy:.1f}% of {matrix.sum()} images", fontsize=10, parse_math=False)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="images")
    fig.tight_layout()
    return fig


LOSS_FLOOR = 1e-4  # losses of exactly 0 (a saturated softmax) drawn here on the log axis


def lr_sweep_figure(sweeps, labels=None, title=None):
    """Loss against learning rate (log-log) of one lr_finder.LrSweep or a list of them.

    Each sweep: its smoothed loss as a line, its minimum as a dot. One sweep also shows each
    step's measured loss as faint dots and the suggested range shaded, so the suggestion can be
    judged against the curve it was read from.
    """
    single = not isinstance(sweeps, (list, tuple))
    sweeps = [sweeps] if single else list(sweeps)
    labels = labels or [f"seed {s.config.seed}, {s.start:.0e} to {s.end:.0e}" for s in sweeps]
    fig = InlineFigure(figsize=(8, 4.8))
    ax = fig.subplots()
    for sweep, label in zip(sweeps, labels):
        floor = np.maximum
        if single:
            ax.plot(sweep.lrs, floor(sweep.losses, LOSS_FLOOR), ".", color="grey", alpha=0.5, markersize=4,
                    label="loss after each step" + (f" ({sweep.probe} validation images)" if sweep.probe else ""))
        line, = ax.plot(sweep.lrs, floor(sweep.smoothed, LOSS_FLOOR), "-", linewidth=2,
                        label="smoothed" if single else label)
        s = sweep.suggestion
        at = int(np.argmin(np.abs(sweep.lrs - s.minimum)))
        ax.plot([s.minimum], [max(sweep.smoothed[at], LOSS_FLOOR)], "o", color=line.get_color())
        if single:
            ax.axvspan(s.low, s.high, color="tab:green", alpha=0.15, label=f"suggested {s.low:.0e} to {s.high:.0e}")
            ax.axvline(s.minimum, color="tab:red", linestyle=":", label=f"lowest at {s.minimum:.1e}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="learning rate", ylabel=f"loss (mean per image; 0 drawn at {LOSS_FLOOR:g})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title is None:
        c = sweeps[0].config
        title = f"Learning-rate sweep: {c.optimizer}, batch {c.batch_size}, normalize {c.normalize}, {c.color}" + (
            f", seed {c.seed}" if single else "")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def mistakes_figure(images, mistakes, title="Most confident mistakes", columns=4):
    """A gallery of mistakes.Mistake: each photo (uint8 (H, W, 3), indexed by mistake.index in
    images) with its true and predicted class, the confidence and the end of its file path."""
    count = max(len(mistakes), 1)
    columns = min(columns, count)
    rows = -(-count // columns)
    fig = InlineFigure(figsize=(2.6 * columns, 3.2 * rows + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for ax, mistake in zip(axes.ravel(), mistakes):
        ax.set_visible(True)
        ax.imshow(images[mistake.index], interpolation="nearest")
        _hide_ticks(ax)
        ax.set_title(f"{mistake.true} -> {mistake.predicted}\n{100 * mistake.confidence:.1f}% sure", fontsize=9)
        where = "/".join(mistake.path.replace("\\", "/").split("/")[-2:]) if mistake.path else f"#{mistake.index}"
        ax.set_xlabel(where, fontsize=7)
    if not mistakes:
        axes[0, 0].set_visible(True)
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def explanation_figure(explanation, photo=None, title=None):
    """The photo, its saliency map and its occlusion map side by side (an explain.Explanation).

    photo: the photo at any resolution (uint8 (h, w, 3)); default the network's 32 x 32 view. The
    maps, computed at the network's resolution, are stretched over it cell by cell, so each of
    their squares covers the part of the photo that was averaged into one input pixel.
    """
    e = explanation
    photo = e.image if photo is None else photo
    h, w = photo.shape[:2]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # imshow's own extent for the photo
    fig = InlineFigure(figsize=(12, 4.2))
    photo_ax, saliency_ax, occlusion_ax = fig.subplots(1, 3)
    for ax in (photo_ax, saliency_ax, occlusion_ax):
        ax.imshow(photo, interpolation="antialiased")
        _hide_ticks(ax)
    photo_ax.set_title(f"predicted {e.predicted} ({100 * e.confidence:.1f}%)", fontsize=10)
    shown = saliency_ax.imshow(e.saliency, cmap="inferno", alpha=0.6, extent=extent, interpolation="nearest",
                               vmin=0, vmax=float(e.saliency.max()) or 1.0)
    saliency_ax.set_title(f"saliency: |d {e.score}({e.class_name}) / d pixel|", fontsize=10)
    fig.colorbar(shown, ax=saliency_ax, shrink=0.8)
    limit = float(np.abs(e.occlusion).max()) or 1.0
    shown = occlusion_ax.imshow(e.occlusion, cmap="RdBu_r", alpha=0.6, extent=extent, interpolation="nearest",
                                vmin=-limit, vmax=limit)
    occlusion_ax.set_title(f"occlusion ({e.patch}x{e.patch} patches): fall of p({e.class_name})", fontsize=10)
    fig.colorbar(shown, ax=occlusion_ax, shrink=0.8)
    fig.suptitle(title or f"Why {e.class_name} (p = {e.probability:.3f})", fontsize=11)
    fig.tight_layout()
    return fig


def _ordinal(n):
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _label(name):
    return name if len(name) <= LABEL_LENGTH else name[:LABEL_LENGTH - 1] + "…"


SWEEP_COLUMNS = 4  # panels per row of a sweep's figure
SWEEP_TICKS = 20  # labelled values on a panel's axis of names or layouts


def sweep_figure(report):
    """Accuracy against each swept setting, one panel per setting, from a SweepReport.

    Every finished run is a point (filled: test, open: validation) above its setting's value; the
    lines join the medians per value. Numeric settings spread over 10x or more get a log axis;
    others (layouts, names) are placed in the order they were listed.
    """
    runs = [run for run in report.runs if run["outcome"] == "finished"]
    names = report.swept
    columns = min(len(names), SWEEP_COLUMNS)
    rows = -(-len(names) // columns)  # panels wrap onto more rows: the figure grows with sqrt of the settings
    fig = InlineFigure(figsize=(4.2 * columns + 0.6, 4.2 * rows))
    grid = fig.subplots(rows, columns, sharey=True, squeeze=False)
    axes = grid.reshape(-1)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes, names):
        values = [run["params"][name] for run in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            def position(v):
                return v
            distinct = sorted(set(values))
        else:
            distinct = list(dict.fromkeys(json_key(v) for v in values))
            places = {key: place for place, key in enumerate(distinct)}

            def position(v):
                return places[json_key(v)]
        for key, marker, color, label in (("test_accuracy", "o", "C0", "test"), ("val_accuracy", "s", "C1",
                                                                                     "validation")):
            xs = [position(v) for v in values]
            ys = [100 * run[key] for run in runs]
            filled = color if key == "test_accuracy" else "none"
            ax.scatter(xs, ys, marker=marker, facecolors=filled, edgecolors=color, alpha=0.7, label=f"{label} (a run)")
            at = {}
            for x, y in zip(xs, ys):
                at.setdefault(x, []).append(y)
            points = sorted(at)
            medians = [np.median(at[p]) for p in points]
            ax.plot(points, medians, "-", color=color, label=f"{label} (median)")
        if numeric and distinct and min(distinct) > 0 and max(distinct) / min(distinct) >= 10:
            ax.set_xscale("log")
        if not numeric:  # at most SWEEP_TICKS labels (every k-th beyond), each cut to a readable length
            step = -(-len(distinct) // SWEEP_TICKS)
            ax.set_xticks(range(0, len(distinct), step), [_short(label) for label in distinct[::step]],
                          parse_math=False)
        elif len(distinct) <= 8:  # a few swept values: tick exactly those
            ax.set_xticks(distinct, [f"{v:g}" for v in distinct])
            ax.minorticks_off()
        ax.set(xlabel=name, title=name)
        ax.grid(alpha=0.3)
    for row in grid:
        row[0].set_ylabel("Accuracy (%)")
    axes[0].legend(fontsize=8)
    splits = sorted({run["val_split"] for run in runs})
    fig.suptitle(f"{len(report.rows)} settings x {len(report.seeds)} seeds, validation split: {', '.join(splits)}",
                 parse_math=False)  # split names are drawn as written
    fig.tight_layout()
    return fig


def _short(label, most=24):
    return label if len(label) <= most else label[:most - 1] + "\u2026"


def json_key(value):
    """A setting's value as a label: layouts as 841,29."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
