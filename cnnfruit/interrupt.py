"""Ctrl-C and SIGTERM during training: ask the loop to stop at the next step, don't kill it.
Before training, while images load, both end the command at once with a message (there is
nothing to save yet), SIGTERM as Ctrl-C does.

A signal that lands inside a Numba kernel is handled when the kernel returns, so the step in
flight always finishes and the saved state is a consistent one. A second signal gives up waiting:
it raises KeyboardInterrupt at once (files are written atomically, so nothing is left half-done).
"""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # what shells report for a command ended by Ctrl-C (128 + SIGINT)


class _OnSignals:
    """SIGINT and SIGTERM go to self._handle while the `with` block runs, in the main thread (only
    it may set handlers; elsewhere signals keep their meaning); the handlers found are put back
    after. `received` is the number of the first signal that arrived, or None."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


class StopOnSignal(_OnSignals):
    """Within `with StopOnSignal(request):`, SIGINT/SIGTERM call request(signal_number) once."""

    def __init__(self, request):
        super().__init__()
        self.request = request

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        self.request(signum)


def signal_name(signum):
    return signal.Signals(signum).name


class InterruptOnSignal(_OnSignals):
    """Within `with InterruptOnSignal() as signals:`, SIGINT and SIGTERM raise KeyboardInterrupt in
    the main thread, so that loading stops its worker processes and the command says what it did;
    `received` names the signal. Without it SIGTERM would end the process with no word."""

    def _handle(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt
