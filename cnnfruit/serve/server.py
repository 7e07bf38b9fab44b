"""Listening and serving: a socket bound before anything is printed, and uvicorn running the app on it.

The socket is bound here, not by uvicorn, so that a port in use is a one-line error before the
address is printed, and so that port 0 (any free port) prints the port it got.
"""
import contextlib
import socket

import uvicorn

from cnnfruit.interrupt import StopOnSignal

from cnnfruit.errors import CnnfruitError

# Connections and requests in flight at once; beyond it uvicorn answers 503. Each holds at most
# its images' first limits.SPOOL_BYTES in memory, the rest in temporary files.
MAX_CONCURRENCY = 128


def listen(host, port):
    """A listening TCP socket on host:port (port 0: any free one), or a CnnfruitError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as err:
        raise CnnfruitError(f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise CnnfruitError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def address(sock):
    """The URL to open for a listening socket."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    else:
        shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by Ctrl-C or SIGTERM as a finished job: uvicorn's own handling
    raises the signal again once it has shut down, which ends the process as killed (130 or -15)."""

    @contextlib.contextmanager
    def capture_signals(self):
        with StopOnSignal(self._stop) as stopper:
            yield
        self.signal = stopper.received

    def _stop(self, signum):
        self.should_exit = True


def config(app, access_log=False):
    """uvicorn's settings for serving app."""
    return uvicorn.Config(app, http="h11", loop="asyncio", lifespan="off", log_level="warning",
                          access_log=access_log, limit_concurrency=MAX_CONCURRENCY, timeout_keep_alive=5,
                          timeout_graceful_shutdown=5)


def run(app, sock, access_log=False):
    """Serve app on sock until Ctrl-C or SIGTERM; a second signal stops at once (KeyboardInterrupt).
    Returns the signal that stopped it."""
    server = _Server(config(app, access_log))
    server.signal = None
    server.run(sockets=[sock])
    return server.signal
