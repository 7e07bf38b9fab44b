"""Load test of `cnnfruit serve` on 127.0.0.1: many clients at once, against predict_proba in-process.

    python benchmarks/bench_serve.py                       # 32 clients x 50 requests, 1 photo each
    python benchmarks/bench_serve.py --clients 8 --requests 20 --images 4 --rounds 3
    python benchmarks/bench_serve.py --serve-args "--max-batch 1"      # no micro-batches, to compare

The model is the report's network (1x32x32 -> conv 8x4x4 -> 841 -> 29 -> 3) with initial
weights: speed does not depend on what it learned. The photos are the embedded test photos
scaled to 100 x 100 JPEGs, as the raw fruits-360 photos are. The server is `cnnfruit serve` in a
child process, the clients are threads of this one, each with one keep-alive connection and a
multipart body encoded once, so that a client costs little beside the server; both share the
machine's cores.

Every round sends clients x requests requests and waits for all; a request that is not a 200
with as many answers as images counts as an error. Latency is from sending a request to reading
its whole answer. The server's RSS (VmRSS from /proc) is read after start, after a warm-up round
and after each measured round: it must stay flat. The in-process figures time predict_proba on
the decoded pixels, and load_image + predict_proba from the JPEG bytes (what the server does per
image, without HTTP), in batches of 16 and of 256 images.

The test is bounded: at most --clients x --requests x --rounds requests, each with a 60 s
timeout, only to 127.0.0.1.
"""
import argparse
import datetime
import http.client
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def make_model(folder):
    import numpy as np

    import cnnfruit
    from cnnfruit.architecture import init_parameters

    data = cnnfruit.load_embedded()
    arch = cnnfruit.Architecture.from_config(cnnfruit.TrainConfig(), len(data.class_names), 32)
    classifier = cnnfruit.Classifier(arch, init_parameters(arch, np.random.default_rng(0)), data.class_names)
    path = os.path.join(folder, "report-network.npz")
    classifier.save(path)
    return path


def make_photos(count):
    from PIL import Image

    import cnnfruit

    images = cnnfruit.load_embedded().test.images
    photos = []
    for k in range(count):
        out = io.BytesIO()
        Image.fromarray(images[(37 * k) % len(images)]).resize((100, 100), Image.Resampling.BICUBIC).save(
            out, format="JPEG", quality=90)
        photos.append(out.getvalue())
    return photos


def multipart(photos):
    boundary = "cnnfruit-bench-boundary"
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p{k}.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n".encode() + photo + b"\r\n" for k, photo in enumerate(photos))
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- in-process reference


def in_process(model, photos, seconds=3.0):
    import numpy as np

    import cnnfruit
    from cnnfruit.serve.model import decode

    cnnfruit.configure_threads()
    classifier = cnnfruit.Classifier.load(model)
    pixels = np.stack([decode(f"p{k}", photo, 32).pixels for k, photo in enumerate(photos)])
    rows = np.concatenate([pixels] * (512 // len(pixels) + 1))[:512]
    classifier.predict_proba(rows[:64])  # compiled before timing
    figures = {}
    for batch in (16, 256):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            classifier.predict_proba(rows, batch_size=batch)
            count += len(rows)
        figures[f"predict_proba, batches of {batch}"] = count / (time.perf_counter() - started)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            decoded = np.stack([decode("p", photos[k % len(photos)], 32).pixels for k in range(len(rows))])
            classifier.predict_proba(decoded, batch_size=batch)
            count += len(rows)
        figures[f"load_image + predict_proba, batches of {batch}"] = count / (time.perf_counter() - started)
    return figures


# ---- the load


def client(port, body, content_type, images, requests, latencies, errors):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(requests):
        started = time.perf_counter()
        try:
            connection.request("POST", "/api/predict", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            answer = response.read()
            ok = response.status == 200 and len(json.loads(answer)["images"]) == images
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append(time.perf_counter() - started)
        if not ok:
            errors.append(1)
    connection.close()


def load_round(port, photos, clients, requests, images):
    bodies = [multipart([photos[(k * images + j) % len(photos)] for j in range(images)]) for k in range(clients)]
    latencies, errors = [], []
    threads = [threading.Thread(target=client, args=(port, *bodies[k], images, requests, latencies, errors))
               for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "seconds": seconds, "images_per_s": len(latencies) * images / seconds,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "errors": len(errors)}


def healthz(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/healthz")
    return json.loads(connection.getresponse().read())["batching"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=50, help="per client and round")
    parser.add_argument("--images", type=int, default=1, help="photos per request")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=None, help="a checkpoint (default: the report's network, untrained)")
    parser.add_argument("--serve-args", default="", help="more flags for cnnfruit serve, e.g. '--max-batch 1'")
    parser.add_argument("--out", default=None, help="also append the report to this file")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench-serve-")
    model = args.model or make_model(folder)
    photos = make_photos(64)
    reference = in_process(model, photos)

    server = subprocess.Popen([sys.executable, "-m", "cnnfruit", "serve", model, "--port", "0",
                               *args.serve_args.split()], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        port = int(line.split(" at ")[1].split(":")[2].split("/")[0])
        rss = [("after start", rss_mb(server.pid))]
        load_round(port, photos, min(args.clients, 8), 10, args.images)
        rss.append(("after a warm-up round", rss_mb(server.pid)))
        before = healthz(port)
        rounds = []
        for k in range(args.rounds):
            rounds.append(load_round(port, photos, args.clients, args.requests, args.images))
            rss.append((f"after round {k + 1}", rss_mb(server.pid)))
        after = healthz(port)
    finally:
        server.terminate()
        server.wait(30)

    batches = after["batches"] - before["batches"]
    images = after["images"] - before["images"]
    load = os.getloadavg()
    lines = [
        f"cnnfruit serve under load on 127.0.0.1, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"load average after: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}",
        f"model: {'the report network, untrained' if args.model is None else args.model}; "
        f"{args.clients} clients x {args.requests} requests x {args.rounds} rounds, {args.images} photo(s) of "
        "100 x 100 JPEG per request; server and clients share the CPUs",
        "",
        f"{'in-process (no HTTP), 512 images a call':<52} {'images/s':>9}",
        *(f"{name:<52} {value:>9.0f}" for name, value in reference.items()),
        "",
        f"{'round':<8} {'requests':>8} {'seconds':>8} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
        *(f"{k + 1:<8} {r['requests']:>8} {r['seconds']:>8.2f} {r['images_per_s']:>9.0f} {r['p50_ms']:>8.1f} "
          f"{r['p99_ms']:>8.1f} {r['errors']:>7}" for k, r in enumerate(rounds)),
        "",
        f"micro-batches in the measured rounds: {batches} for {images} images, {images / max(batches, 1):.1f} "
        f"images per batch on average, largest {after['largest_batch']}",
        "server RSS: " + ", ".join(f"{name} {value:.0f} MB" for name, value in rss),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "a") as out:
            out.write(report + "\n\n")
    if any(r["errors"] for r in rounds):
        sys.exit(1)


if __name__ == "__main__":
    main()
