"""`cnnfruit serve`: a web page and an HTTP API for one trained model (the [serve] extra).

The web stack is imported inside the command, so `cnnfruit --help` still starts at once.
"""
import click

from cnnfruit.cli.options import computing
from cnnfruit.errors import CnnfruitError

SERVE_PACKAGES = (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("python_multipart", "python-multipart"))


def _check_installed():
    from importlib.util import find_spec

    missing = [name for module, name in SERVE_PACKAGES if find_spec(module) is None]
    if missing:
        raise CnnfruitError(f"cnnfruit serve needs the [serve] extra ({', '.join(missing)} missing): "
                            "pip install 'cnnfruit[serve]'")


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default answers this machine only; 0.0.0.0 (or ::) opens the "
                   "server to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on; 0 takes any free port (printed).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Answers below this probability are marked unsure, unless a request or the page sets its own.")
@click.option("--max-upload-mb", type=click.FloatRange(0, 1024, min_open=True), default=16, show_default=True,
              help="Largest image file accepted, in MB (2^20 bytes); a larger one is refused with 413.")
@click.option("--max-images", type=click.IntRange(1, 1000), default=32, show_default=True,
              help="Most images in one request; more are refused with 413.")
@click.option("--upload-timeout", type=click.FloatRange(0, 3600, min_open=True), default=30, show_default=True,
              help="Seconds a request's upload may take; a slower or stalled one is refused with 408.")
@click.option("--max-batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Most images answered by one call into the network: requests that arrive together share it.")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 1000), default=2, show_default=True,
              help="How long a request waits for others to share its batch, in milliseconds.")
@click.option("--access-log", is_flag=True, help="Print a line per request.")
def serve(model, host, port, min_confidence, max_upload_mb, max_images, upload_timeout, max_batch, batch_wait_ms,
          access_log):
    """Serve MODEL: a web page to drop photos on, and an HTTP API (docs/serve.md).

    The page shows each photo's class and probabilities, the 32x32 view the network sees, and
    the saliency or occlusion map over the photo; POST /api/predict and /api/explain answer
    programs. Requests that arrive together are answered in one batch, with the same
    probabilities as `cnnfruit predict` on each file alone. Ctrl-C stops it.
    """
    _check_installed()
    computing()
    from cnnfruit.serve import model as served
    from cnnfruit.serve.app import Service, create_app
    from cnnfruit.serve.limits import Limits
    from cnnfruit.serve.server import address, listen, run

    classifier = served.load(model)
    limits = Limits(round(max_upload_mb * 2**20), max_images, upload_timeout)
    sock = listen(host, port)
    service = Service(classifier, limits, min_confidence, max_batch, batch_wait_ms / 1000)
    try:
        service.warm_up()
        click.echo(f"Serving {model} at {address(sock)} (Ctrl-C stops)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"Note: listening on {host}: other machines can reach this server", err=True)
        run(create_app(service), sock, access_log)
    except KeyboardInterrupt:  # Ctrl-C while warming up, or a second one: no waiting for requests in flight
        pass
    finally:
        sock.close()
        service.close()
    click.echo("Stopped")
