"""What the command line shows in a terminal: run descriptions, the evaluation and sweep tables, the
loading and sweep progress bars (the training bar is the library's, in progress.py).

Kept apart from the commands, which parse flags and call the library; this module only draws, with rich.
"""
import click

# Width of output that goes to a pipe, a file or a CI log: no table cell is cut ("validat…") and no
# line is wrapped at rich's 80-column guess; a terminal keeps its own width.
PIPE_WIDTH = 100_000


def output_console(stderr=False):
    """A rich Console for stdout (or stderr): as wide as the terminal, or unbounded when not one."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)


def describe_run(run, echo=click.echo):
    loop = run.loop
    dataset, data, arch = loop.dataset, loop.splits, loop.network.arch
    echo(
        f"Training on {dataset.name}: {len(data.y_train)} train / {len(data.y_val)} "
        f"{'validation (its val folder)' if dataset.val is not None else 'validation'} / {len(data.y_test)} test "
        f"images, {describe_classes(dataset.class_names)}"
    )
    echo(f"Network: {arch.describe()}")
    if loop.class_weights is not None:
        weights = ", ".join(f"{name} {w:.4g}" for name, w in zip(dataset.class_names, loop.class_weights))
        echo(f"Class weights ({loop.config.class_weights}): {weights}")


def describe_classes(names, shown=8):
    """"classes A, B, C", or for many of them the first few and how many more."""
    if len(names) <= shown:
        return f"classes {', '.join(names)}"
    return f"{len(names)} classes: {', '.join(names[:shown])} and {len(names) - shown} more"


def epoch_line(record, config):
    """The report's epoch line, with the learning rate the epoch started at when it moves."""
    line = str(record)
    if config.lr_schedule != "constant" and record.lr is not None:
        line += f" | LR {record.lr:.3g}"
    return line


def describe_best(history):
    if history.best_epoch is None:
        return "it was never a finite number"
    return f"best {history.best_val_loss:.4f} at epoch {history.best_epoch}"


# The confusion matrix as a terminal table only up to this many classes: it is M columns wide,
# and at 1000 classes drawing it took 12 s and 600 MB to print a million numbers nobody can read.
MATRIX_TABLE_CLASSES = 20


def print_report(report):
    """The evaluation report as tables; class names are shown as written (escaped: `[red]Lychee` is a name,
    not rich markup)."""
    from rich.markup import escape
    from rich.table import Table

    console = output_console()
    console.print(f"Accuracy: {100 * report['accuracy']:.1f}% on {report['images']} images ({report['split']} split)")
    if "balanced_accuracy" in report:
        console.print(f"Balanced accuracy: {100 * report['balanced_accuracy']:.1f}% (the mean of the per-class "
                      "recalls)")
    per_class = Table("class", "precision", "recall", "support", title="Per class")
    for row in report["per_class"]:
        per_class.add_row(escape(row["class"]), f"{row['precision']:.3f}", f"{row['recall']:.3f}", str(row["support"]))
    console.print(per_class)
    names = report["class_names"]
    if len(names) > MATRIX_TABLE_CLASSES:
        console.print(f"Confusion matrix: {len(names)} classes are too many for a table; --json gives it, "
                      f"--plot draws it", markup=False, soft_wrap=True)
        return
    matrix = Table("true \\ predicted", *map(escape, names), title="Confusion matrix")
    for name, row in zip(names, report["confusion_matrix"]):
        matrix.add_row(escape(name), *(str(count) for count in row))
    console.print(matrix)


def print_summary(summary):
    """A summary.Summary as a table, then its totals and how backward FLOPs are counted."""
    from rich.table import Table

    arch = summary.arch
    table = Table("layer", "spec", "output shape", "parameters", "forward FLOPs", "backward FLOPs",
                  title=f"{arch.in_channels}x{arch.image_size}x{arch.image_size} input, {arch.classes} classes: "
                        "per image")
    for layer in summary.layers:
        table.add_row(layer.name, layer.spec, "x".join(map(str, layer.output_shape)), f"{layer.parameters:,}",
                      f"{layer.forward_flops:,}", f"{layer.backward_flops:,}")
    table.add_row("total", "", "", f"{summary.total_parameters:,}", f"{summary.forward_flops:,}",
                  f"{summary.backward_flops:,}", style="bold")
    console = output_console()
    console.print(table)
    console.print(f"Parameters: {summary.total_parameters:,} ({4 * summary.total_parameters / 2**20:.1f} MiB as float32)")
    console.print(f"Training step: {summary.training_flops:,} FLOPs per image (forward + backward); "
                  f"prediction: {summary.forward_flops:,}")
    console.print("FLOPs count 2 per multiply-add of each layer's products (bias adds, ReLU, pooling and softmax "
                  "left out). Backward: a layer computes its weight gradient and its input gradient (2x its "
                  "forward); the lowest layer with weights only its weight gradient (1x), since nothing below it "
                  "learns. explain's saliency map adds that layer's input gradient: "
                  f"{summary.input_gradient_flops:,} more.")


class SweepProgressBar:
    """Runs done of a sweep, with running, pruned and failed counts, and a line per ended run."""

    def __init__(self, quiet, planned):
        self.quiet = quiet
        self.planned = planned
        self.progress = None
        self.task = None

    def __enter__(self):
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("sweep", total=self.planned, counts="")
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def update(self, progress, record):
        if self.progress is None:
            return
        ended = progress.finished + progress.pruned + progress.failed
        counts = (f"{progress.finished} finished, {progress.running} running, {progress.pruned} pruned, "
                  f"{progress.failed} failed")
        self.progress.update(self.task, completed=ended, counts=counts)
        if record is not None:
            self.progress.console.print(describe_sweep_run(record), markup=False, highlight=False, soft_wrap=True)


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f}%"


def _shown(value):
    """A setting's value as the table shows it: layouts as 841,29, floats to 4 significant digits."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_sweep_run(record):
    setting = " ".join(f"{name}={_shown(value)}" for name, value in record["params"].items())
    line = f"trial {record['trial']} {setting} seed={record['seed']}: {record['outcome']}"
    if record["outcome"] == "finished":
        line += f", validation {_percent(record['val_accuracy'])}, test {_percent(record['test_accuracy'])}"
    elif record["outcome"] == "pruned":
        line += f" after epoch {record['epochs']} (validation loss {record['val_loss']:.4f})"
    if record["error"]:
        line += f" ({record['error']})"
    if record["seconds"] is not None:
        line += f" [{record['seconds']:.1f} s]"
    return line


def print_sweep_report(report):
    """The settings best first, and how far validation accuracy ranks runs like test accuracy."""
    from rich.table import Table

    def with_spread(median, spread):
        return "-" if median is None else f"{100 * median:.1f} ± {100 * spread / 2:.1f}"

    console = output_console()
    table = Table(*report.swept, "validation %", "test %", "best val loss", "s / run", "runs", "state",
                  title=f"Settings by median validation accuracy over seeds {', '.join(map(str, report.seeds))}")
    for row in report.rows:
        runs = f"{row['finished']}/{row['finished'] + row['pruned'] + row['failed']}"
        loss = "-" if row["best_val_loss"] is None else f"{row['best_val_loss']:.4f}"
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.1f}"
        table.add_row(*(_shown(row["params"][name]) for name in report.swept),
                      with_spread(row["val_accuracy"], row["val_accuracy_spread"]),
                      with_spread(row["test_accuracy"], row["test_accuracy_spread"]), loss, seconds, runs, row["state"])
    console.print(table)
    console.print("(median ± half the spread between seeds; runs: finished / made)", highlight=False)
    for split, summary in report.validation_vs_test.items():
        def rho(value):
            return "n/a" if value is None else f"{value:.2f}"

        console.print(f"Validation vs test, {split} split: Spearman {rho(summary['spearman'])} between validation "
                      f"and test accuracy over {summary['runs']} finished runs, "
                      f"{rho(summary.get('spearman_by_setting'))} between this table's order and median test "
                      f"accuracy over {summary.get('settings')} settings (medians: validation "
                      f"{_percent(summary['val_accuracy_median'])}, test {_percent(summary['test_accuracy_median'])})",
                      highlight=False)
    if report.seconds is not None:
        console.print(f"Wall time: {report.seconds:.1f} s", highlight=False)


class LoadProgress:
    """A progress bar while an image folder loads, on stderr when it is a terminal; else nothing.

    As a context manager it gives the progress(done, total) callback read_image_folder takes, or
    None when quiet (the loader then reports nothing).
    """

    def __init__(self, quiet=False):
        self.quiet = quiet
        self.progress = None
        self.task = None

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        if self.quiet or not console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("loading images"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.progress.start()
        return self.update

    def update(self, done, total):
        if self.task is None:
            self.task = self.progress.add_task("load", total=total)
        self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
