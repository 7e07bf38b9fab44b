"""`cnnfruit serve`: the API's answers against `cnnfruit predict`, its limits, bad requests, threads, the command."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx2")  # what Starlette's test client drives

from starlette.testclient import TestClient  # noqa: E402

import cnnfruit  # noqa: E402
from cnnfruit.cli import main  # noqa: E402
from cnnfruit.serve.app import Service, create_app  # noqa: E402
from cnnfruit.serve.limits import Limits  # noqa: E402

from serving import as_float32, serving, train_model, write_photos  # noqa: E402

LIMITS = Limits(max_upload_bytes=256 * 1024, max_images=8, upload_timeout=1.0)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_model(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("serve-photos"))


@pytest.fixture(scope="module")
def service(model_path):
    cnnfruit.configure_threads()
    service = Service(cnnfruit.Classifier.load(model_path), LIMITS, min_confidence=0.5)
    service.warm_up()
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service)) as client:
        yield client


def files(*paths):
    return [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def png_bytes(image):
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# ---- answers


def test_answers_are_those_of_cnnfruit_predict_bit_for_bit(client, model_path, photos):
    given = CliRunner().invoke(main, ["predict", "--json", model_path, *map(str, photos)])
    assert given.exit_code == 0, given.output
    expected = {os.path.basename(entry["file"]): entry for entry in json.loads(given.output)}
    response = client.post("/api/predict", files=files(*photos))
    assert response.status_code == 200, response.text
    answers = response.json()["images"]
    assert [a["file"] for a in answers] == [p.name for p in photos]
    for answer in answers:
        want = expected[answer["file"]]
        assert answer["probabilities"] == want["probabilities"]  # JSON floats of the same float32 bits
        assert answer["class"] == max(want["probabilities"], key=want["probabilities"].get)
    raw = client.post("/api/predict?name=one.jpg", content=photos[0].read_bytes(), headers={"content-type": "image/jpeg"})
    assert raw.json()["images"][0]["probabilities"] == expected[photos[0].name]["probabilities"]
    assert raw.json()["images"][0]["file"] == "one.jpg"


def test_tta_and_threshold_answer_as_predict_does(client, model_path, photos):
    given = CliRunner().invoke(main, ["predict", "--json", "--tta", "flip", "--min-confidence", "0.99", model_path,
                                      *map(str, photos[:3])])
    expected = json.loads(given.output)
    answers = client.post("/api/predict?tta=flip&min_confidence=0.99", files=files(*photos[:3])).json()["images"]
    for answer, want in zip(answers, expected):
        assert answer["probabilities"] == want["probabilities"]
        assert answer["unsure"] == (want["class"] is None)


def test_a_micro_batch_gives_each_image_its_own_bits(service, photos):
    """However requests are batched, a row is what the image gives alone."""
    clf = service.classifier
    pixels = np.stack([cnnfruit.load_image(p) for p in photos] * 7)  # 42 images, past every BLAS switch
    alone = np.concatenate([clf.predict_proba(image[None]) for image in pixels])
    together = service.batcher.predict(pixels).result()
    assert together.dtype == alone.dtype and np.array_equal(together, alone)


def test_the_network_s_view_and_the_model(client, photos, model_path):
    answer = client.post("/api/predict?view=1", files=files(photos[0])).json()["images"][0]
    assert answer["view"].startswith("data:image/png;base64,")
    model = client.get("/api/model").json()
    assert model["class_names"] == ["Carambula", "Lychee", "Pear"]
    assert model["cnnfruit_version"] == cnnfruit.__version__
    assert model["training"]["settings"]["normalize"] == "standardize"
    assert [layer["name"] for layer in model["layers"]] == [layer.name for layer in cnnfruit.summarize(model_path).layers]
    assert model["total_parameters"] == cnnfruit.summarize(model_path).total_parameters
    assert model["limits"]["max_images"] == LIMITS.max_images
    assert client.get("/healthz").json()["status"] == "ok"
    assert set(client.get("/api/openapi.json").json()["paths"]) == {"/api/predict", "/api/explain", "/api/model",
                                                                     "/healthz"}
    page = client.get("/")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers and b"page.js" in page.content


def test_explain_draws_the_map_over_the_photo(client, service, photos):
    response = client.post("/api/explain?map=saliency", files=files(photos[2]))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (96, 96)
    probs = service.classifier.predict_proba(cnnfruit.load_image(photos[2])[None])[0]
    assert int(response.headers["x-cnnfruit-class-index"]) == int(probs.argmax())
    assert float(response.headers["x-cnnfruit-probability"]) == float(probs.max())
    other = client.post("/api/explain?class=Lychee", files=files(photos[2]))
    assert other.headers["x-cnnfruit-class-index"] == "1"


# ---- bad requests: each a 4xx with one line of JSON, and the server answers the next one


def bomb():
    """A 9000 x 9000 PNG of a few KB: 81 million pixels, past load_image's 64 million."""
    return png_bytes(Image.new("1", (9000, 9000)))


def cut(path):
    data = path.read_bytes()
    return data[:len(data) // 3]


BAD_REQUESTS = [
    # (name, request keyword arguments, status, start of the error)
    ("text body", dict(content=b"hello", headers={"content-type": "text/plain"}), 415,
     "cannot read images from a request of Content-Type text/plain"),
    ("no content type", dict(content=b"hello"), 415, "cannot read images from a request of Content-Type none"),
    ("json body", dict(json={"image": "photo0.jpg"}), 415, "cannot read images from a request of Content-Type "
                                                           "application/json"),
    ("no boundary", dict(content=b"x", headers={"content-type": "multipart/form-data"}), 400,
     "the multipart/form-data request has no boundary"),
    ("cut-off multipart", dict(content=b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\""
                                       b"\r\n\r\nabc", headers={"content-type": "multipart/form-data; boundary=b"}),
     400, "the multipart body ends before its closing boundary"),
    ("a text field", dict(data={"path": "/etc/passwd"}, files=[("image", ("a.png", b"x", "image/png"))]), 400,
     "the form field 'path' is not a file"),
    ("nothing in it", dict(content=b"--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b"}), 400,
     "the request holds no image"),
    ("too many images", "many", 413, "more than 8 images in one request"),
    ("a large file", dict(files=[("image", ("big.jpg", b"\xff\xd8\xff" + bytes(300 * 1024), "image/jpeg"))]), 413,
     "image big.jpg is larger than 0.25 MB"),
    ("a large raw body", dict(content=bytes(300 * 1024), headers={"content-type": "image/png"}), 413,
     "image #1 is larger than 0.25 MB"),
    ("not an image", dict(files=[("image", ("notes.txt", b"just text", "text/plain"))]), 422,
     "cannot read image notes.txt: not an image format the server reads"),
    ("postscript", dict(files=[("image", ("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n", "image/jpeg"))]), 422,
     "cannot read image x.eps: not an image format the server reads"),
    ("a path for a name", dict(files=[("image", ("../../etc/passwd", b"root:x:0:0", "image/png"))]), 422,
     "cannot read image passwd: not an image format"),
    ("empty upload", dict(content=b"", headers={"content-type": "image/jpeg"}), 422,
     "cannot read image #1: the upload is empty"),
    ("decompression bomb", "bomb", 422, "cannot read image bomb.png: 9000 x 9000 is more than the 64,000,000 pixels"),
    ("a cut-off jpeg", "cut", 422, "cannot read image cut.jpg: "),
    ("bad threshold", dict(params={"min_confidence": "lots"}), 400, "min_confidence must be a number from 0 to 1, "
                                                                    "got 'lots'"),
    ("threshold above 1", dict(params={"min_confidence": "1.5"}), 400, "min_confidence must be a number from 0 to 1"),
    ("bad tta", dict(params={"tta": "spin"}), 400, "tta must be one of none, flip, rotate, got 'spin'"),
    ("unknown parameter", dict(params={"file": "/etc/passwd"}), 400, "unknown query parameter 'file'"),
]


@pytest.mark.parametrize("name, request_args, status, message", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_is_a_4xx_with_a_reason(client, photos, name, request_args, status, message):
    if request_args == "many":
        request_args = dict(files=files(*photos, *photos))
    elif request_args == "bomb":
        request_args = dict(files=[("image", ("bomb.png", bomb(), "image/png"))])
    elif request_args == "cut":
        request_args = dict(files=[("image", ("cut.jpg", cut(photos[0]), "image/jpeg"))])
    response = client.post("/api/predict", **request_args)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"].startswith(message)
    assert client.post("/api/predict", files=files(photos[0])).status_code == 200


def test_readable_images_are_answered_beside_unreadable_ones(client, photos):
    response = client.post("/api/predict", files=files(photos[0]) + [("image", ("bad.jpg", b"\xff\xd8\xffjunk", "i"))])
    assert response.status_code == 200
    good, bad = response.json()["images"]
    assert good["class"] and bad == {"file": "bad.jpg", "error": bad["error"]}
    assert bad["error"].startswith("cannot read image bad.jpg: ")


@pytest.mark.parametrize("method, path, params, status, message", [
    ("get", "/nowhere", {}, 404, "no such page or route: /nowhere"),
    ("get", "/api/predict", {}, 405, "/api/predict does not take GET"),
    ("post", "/api/explain", {"map": "heat"}, 400, "map must be one of occlusion, saliency, got 'heat'"),
    ("post", "/api/explain", {"class": "Apple"}, 400, "the model has no class 'Apple'; its classes: Carambula, "
                                                      "Lychee, Pear"),
])
def test_routes_refuse_in_json(client, method, path, params, status, message):
    response = getattr(client, method)(path, params=params)
    assert response.status_code == status and response.json() == {"error": message}


def test_explain_takes_one_readable_image(client, photos):
    two = client.post("/api/explain", files=files(photos[0], photos[1]))
    assert two.status_code == 400 and two.json()["error"] == "explain takes one image per request, got 2"
    bad = client.post("/api/explain", content=b"GIF89a nonsense", headers={"content-type": "image/gif"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("cannot read image #1: ")


# ---- a real server: threads, slow and cut-off uploads


def test_concurrent_clients_get_the_answers_of_serial_calls(model_path, photos):
    """8 client threads at once, through uvicorn, each image answered as the library answers it alone."""
    clf = cnnfruit.Classifier.load(model_path)
    serial = {p.name: clf.predict_proba(cnnfruit.load_image(p)[None])[0] for p in photos}
    explained = {p.name: float(serial[p.name].max()) for p in photos}
    # A server of its own (the module's is idle meanwhile), waiting long enough that batches form
    # however the threads are scheduled.
    service = Service(clf, LIMITS, wait=0.02)
    failures = []

    def client_thread(k, url):
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(12):
                chosen = [photos[(k + i + j) % len(photos)] for j in range(1 + (k + i) % 3)]
                if i % 6 == 5:
                    response = http.post("/api/explain", files=files(chosen[0]))
                    if float(response.headers["x-cnnfruit-probability"]) != explained[chosen[0].name]:
                        failures.append(("explain", chosen[0].name))
                    continue
                for answer in http.post("/api/predict", files=files(*chosen)).json()["images"]:
                    if not np.array_equal(as_float32(answer["probabilities"]), serial[answer["file"]]):
                        failures.append(("predict", answer["file"]))

    try:
        with serving(create_app(service)) as url:
            threads = [threading.Thread(target=client_thread, args=(k, url)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        service.close()
    assert failures == []
    stats = service.batcher.stats
    assert stats.requests == 8 * 10 and stats.batches < stats.requests  # some requests shared a batch


def host_port(url):
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def raw_exchange(url, head, body):
    """Send head and body on a plain socket, then read the answer to its end."""
    with socket.create_connection(host_port(url), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def test_a_stalled_upload_times_out_and_the_server_goes_on(service, photos):
    data = photos[0].read_bytes()
    head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data))
    with serving(create_app(service)) as url:
        started = time.monotonic()
        status, body = raw_exchange(url, head, data[:100])
        assert status == 408 and body == {"error": "the upload did not arrive within 1 s (the server's "
                                                   "--upload-timeout)"}
        assert time.monotonic() - started < 5
        # A client that sends part of its upload and hangs up
        with socket.create_connection(host_port(url)) as sock:
            sock.sendall(head + data[:100])
        assert httpx.post(url + "/api/predict", files=files(photos[0])).status_code == 200


# ---- the command


def test_help_imports_no_web_stack():
    code = ("import sys; from cnnfruit.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('starlette', 'uvicorn', 'python_multipart', 'cnnfruit.serve') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "serve" in out and out.strip().endswith("[]")


def test_a_damaged_checkpoint_stops_serve_with_eval_s_error(tmp_path, model_path):
    damaged = tmp_path / "model.npz"
    damaged.write_bytes(open(model_path, "rb").read()[:2000])
    evaluated = CliRunner().invoke(main, ["eval", str(damaged)])
    served = CliRunner().invoke(main, ["serve", str(damaged)])
    assert served.exit_code == evaluated.exit_code == 1
    assert served.output == evaluated.output and served.output.startswith("Error: ") and served.output.count("\n") == 1


def test_a_missing_extra_is_named(monkeypatch, model_path):
    import cnnfruit.cli.serve

    monkeypatch.setattr(cnnfruit.cli.serve, "SERVE_PACKAGES", (("no_such_module_here", "uvicorn"),))
    result = CliRunner().invoke(main, ["serve", model_path])
    assert result.exit_code == 1
    assert result.output == ("Error: cnnfruit serve needs the [serve] extra (uvicorn missing): "
                             "pip install 'cnnfruit[serve]'\n")


def test_a_port_in_use_is_one_line(model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", model_path, "--port", str(port)])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_serve_prints_its_address_answers_and_stops_on_ctrl_c(model_path, photos):
    process = subprocess.Popen([sys.executable, "-m", "cnnfruit", "serve", model_path, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"Serving {model_path} at http://127.0.0.1:") and line.endswith(" (Ctrl-C stops)\n")
        url = line.split(" at ")[1].split()[0]
        assert httpx.get(url + "healthz").json()["status"] == "ok"
        assert httpx.post(url + "api/predict", files=files(photos[1])).status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and out == "Stopped\n" and "Traceback" not in err
