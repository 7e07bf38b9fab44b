"""Training progress where someone is watching: a bar in a notebook cell or in a terminal, and
nothing in a pipe or a log file.

`fit(..., verbose=)` takes Keras's values:

- "auto" (the default), 1 or True: a progress bar over each epoch's steps where one can be seen:
  in a Jupyter notebook an HTML bar updated in place (no ipywidgets needed), in a terminal a rich
  bar on stderr that clears itself; when stderr is a pipe or a file, nothing.
- 2: one line per epoch on stdout, the command line's epoch line (for logs).
- 0 or False: nothing.

This module and cnnfruit/cli/ are the only places that import rich; IPython is used only when
the code already runs inside it.
"""
import html
import os
import sys
import time

from cnnfruit.errors import CnnfruitError

VERBOSE_VALUES = ("auto", 0, 1, 2)
REDRAW_SECONDS = 0.2  # a notebook bar is redrawn at most this often: each redraw is a message to the browser


def progress_display(verbose, epochs):
    """What fit shows for `verbose` (see the module's docstring), over a run of `epochs` epochs."""
    if isinstance(verbose, bool):
        verbose = int(verbose)
    if verbose not in VERBOSE_VALUES or (verbose != "auto" and not isinstance(verbose, int)):
        raise CnnfruitError(f'verbose must be "auto", 0, 1 or 2, got {verbose!r}')
    if verbose == 0:
        return NoProgress()
    if verbose == 2:
        return EpochLines()
    if in_notebook():
        return NotebookBar(epochs)
    return EpochProgress(quiet=not _stderr_is_terminal())


def _stderr_is_terminal():
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def in_notebook():
    """Whether this runs in a Jupyter kernel (notebook, JupyterLab, VS Code, Colab), whose cells
    show HTML; terminal IPython is a terminal."""
    ipython = sys.modules.get("IPython")  # not imported: not inside IPython, and no cost to find out
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


class NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self, epoch, done, total):
        pass

    def epoch_ended(self, record):
        pass


class EpochLines(NoProgress):
    """verbose=2: the epoch line once each epoch ends, and nothing between."""

    def epoch_ended(self, record):
        print(record, flush=True)


class EpochProgress(NoProgress):
    """A rich progress bar over one epoch's steps, drawn on stderr; a no-op when quiet, and
    invisible when stderr is not a terminal (the bar clears itself and leaves nothing behind).

    Lines printed while the bar is up go through `echo`: when stdout and stderr are the same
    terminal, rich prints them above the bar, which it clears first; otherwise a line written to
    stdout would land after the bar left on screen (`... 1025/1030 0:00:01Epoch: 1 | ...`). A plain
    print() is moved above the bar the same way, but only when both are one terminal: stdout that
    goes to a file stays there.
    """

    def __init__(self, quiet, write=print):
        self.quiet = quiet
        self.write = write  # how a line reaches stdout when the bar cannot take it (the CLI's click.echo)
        self.progress = None
        self.task = None

    def __enter__(self):
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                redirect_stdout=same_terminal(),
            )
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False

    def echo(self, line):
        """Print one line of output (to stdout), whole, whatever the bar is doing."""
        if self.progress is not None and self.progress.live.is_started and same_terminal():
            self.progress.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            self.write(line)

    def step(self, epoch, done, total):
        if self.progress is None:
            return
        if done == 1 or self.task is None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("train", total=total, epoch=epoch)
        if done % max(1, total // 200) == 0 or done == total:  # redraw often enough to move, rarely enough to be free
            self.progress.update(self.task, completed=done)


def same_terminal():
    """Whether stdout and stderr are one terminal, where the bar (stderr) and the lines (stdout) meet."""
    try:
        return os.isatty(1) and os.isatty(2) and os.path.samestat(os.fstat(1), os.fstat(2))
    except OSError:
        return False


class NotebookBar(NoProgress):
    """An HTML progress bar in the notebook cell that runs fit, redrawn in place through an
    IPython display handle. When fit ends it stays, as a bar of epochs: how far the run got."""

    def __init__(self, epochs):
        self.epochs = epochs
        self.handle = None
        self.started = None
        self.shown_at = 0.0
        self.epoch_started = None
        self.last_epoch = 0  # the last epoch that ended

    def __enter__(self):
        from IPython.display import display

        self.started = time.perf_counter()
        self.handle = display(self._bundle("starting", 0, 1), raw=True, display_id=True)
        return self

    def step(self, epoch, done, total):
        now = time.perf_counter()
        if done == 1:
            self.epoch_started = now
        if done == total or now - self.shown_at >= REDRAW_SECONDS:
            self.shown_at = now
            left = (now - self.epoch_started) / done * (total - done) if self.epoch_started else 0.0
            self.handle.update(self._bundle(f"epoch {epoch}/{self.epochs}: step {done}/{total}, {_clock(left)} left",
                                            done, total), raw=True)

    def epoch_ended(self, record):
        self.last_epoch = record.epoch

    def __exit__(self, kind, error, trace):
        text = f"epoch {self.last_epoch}/{self.epochs} in {_clock(time.perf_counter() - self.started)}"
        if kind is not None:
            text += ", interrupted" if issubclass(kind, KeyboardInterrupt) else f", stopped by {kind.__name__}"
        self.handle.update(self._bundle(text, self.last_epoch, self.epochs), raw=True)
        return False

    @staticmethod
    def _bundle(text, done, total):
        bar = f'<progress value="{done}" max="{total}" style="width: 20em; vertical-align: middle"></progress>'
        return {"text/html": f"<div>{bar} {html.escape(text)}</div>", "text/plain": text}


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
