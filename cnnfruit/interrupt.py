"""Ctrl-C and SIGTERM during training: ask the loop to stop at the next step, don't kill it.

A signal that lands inside a Numba kernel is handled when the kernel returns, so the step in
flight always finishes and the saved state is a consistent one. A second signal gives up waiting:
it raises KeyboardInterrupt at once (files are written atomically, so nothing is left half-done).
"""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # what shells report for a command ended by Ctrl-C (128 + SIGINT)


class StopOnSignal:
    """Within `with StopOnSignal(request):`, SIGINT/SIGTERM call request(signal_number) once."""

    def __init__(self, request):
        self.request = request
        self.received = None  # the first signal's number, once one arrives
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        self.request(signum)

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers; elsewhere signals keep their meaning
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


def signal_name(signum):
    return signal.Signals(signum).name
