"""The server's routes: the page, the HTTP API, and every refusal as one line of JSON.

    service = Service(model.load("runs/x/best.npz"))
    app = create_app(service)          # an ASGI app: uvicorn runs it (server.py), tests call it

GET / is the page (page/), POST /api/predict and /api/explain take images, GET /api/model
describes the model, GET /healthz says the server is up. docs/serve.md documents them.
"""
import asyncio
import base64
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cnnfruit.serve import model
from cnnfruit.serve.batching import Batcher
from cnnfruit.serve.limits import Limits, RequestError, read_uploads
from cnnfruit.serve.openapi import openapi

PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/page.js": ("page.js", "text/javascript; charset=utf-8"),
              "/page.css": ("page.css", "text/css; charset=utf-8")}
# The page loads nothing from elsewhere, and nothing can make it: its own files, the images it is given.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
               "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class Service:
    """A classifier, the one thread that calls it, and what requests are answered with.

    limits: Limits; min_confidence: the default threshold below which an answer is unsure;
    max_batch and wait: the micro-batches (batching.Batcher). close() stops its threads.
    """

    def __init__(self, classifier, limits=Limits(), min_confidence=0.5, max_batch=64, wait=0.002):
        self.classifier = classifier
        self.limits = limits
        self.min_confidence = min_confidence
        self.description = model.describe(classifier)
        self.batcher = Batcher(self._predict, max_batch, wait)
        # Decoding is Pillow and numpy on each request's own bytes; a pool as large as the
        # machine keeps many large uploads from decoding (and holding their pixels) at once.
        self.decoders = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="cnnfruit-decode")

    def _predict(self, pixels, tta):
        return self.classifier.predict_proba(pixels, tta=tta)

    def warm_up(self):
        """Compile the network's kernels before the first request needs them (seconds, once)."""
        size = self.classifier.arch.image_size
        blank = np.zeros((size, size, 3), np.uint8)
        self.batcher.predict(blank[None]).result()
        self.batcher.call(model.explain_photo, self.classifier, blank, None, "saliency").result()

    def close(self):
        self.batcher.close()
        self.decoders.shutdown()

    async def decode(self, uploads, view=False):
        """A model.Photo per Upload, decoded in the decoding pool; the uploads are closed."""
        size, color = self.classifier.arch.image_size, self.classifier.color

        def work():
            try:
                photos = [model.decode(upload.name, upload.read(), size) for upload in uploads]
            finally:
                for upload in uploads:
                    upload.close()
            if view:
                for photo in photos:
                    if photo.error is None:
                        photo.view = "data:image/png;base64," + base64.b64encode(
                            model.view_png(photo.pixels, color)).decode("ascii")
            return photos

        return await asyncio.wrap_future(self.decoders.submit(work))


# ---- reading a request's options


def _only(request, names):
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        raise RequestError(400, f"unknown query parameter {unknown[0]!r}; this route takes "
                                f"{', '.join(names) if names else 'none'}")


def _choice(request, name, choices, default):
    value = request.query_params.get(name, default)
    if value not in choices:
        raise RequestError(400, f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _confidence(request, default):
    text = request.query_params.get("min_confidence")
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise RequestError(400, f"min_confidence must be a number from 0 to 1, got {text!r}")
    return value


def _name_of(name, index):
    return model.display_name(name, f"#{index + 1}")


def _json(body, status=200):
    return JSONResponse(body, status, headers=HEADERS)


# ---- the routes


def create_app(service):
    """The ASGI app answering for service (a Service)."""
    classifier = service.classifier
    page = {path: (resources.files(__package__).joinpath("page", name).read_bytes(), kind)
            for path, (name, kind) in PAGE_FILES.items()}

    async def page_file(request):
        content, kind = page[request.url.path]
        return Response(content, media_type=kind, headers={**HEADERS, "Content-Security-Policy": PAGE_POLICY})

    async def healthz(request):
        return _json({"status": "ok", "batching": service.batcher.stats.to_dict()})

    async def describe(request):
        return _json({**service.description, "min_confidence": service.min_confidence,
                      "tta_modes": list(model.TTA_MODES), "maps": list(model.MAPS),
                      "limits": service.limits.to_dict()})

    async def openapi_document(request):
        return _json(openapi(service.description["class_names"]))

    async def predict(request):
        _only(request, ("min_confidence", "tta", "view", "name"))
        min_confidence = _confidence(request, service.min_confidence)
        tta = _choice(request, "tta", model.TTA_MODES, "none")
        view = _choice(request, "view", ("0", "1"), "0") == "1"
        uploads = await read_uploads(request, service.limits, _name_of, request.query_params.get("name"))
        photos = await service.decode(uploads, view)
        readable = [photo for photo in photos if photo.error is None]
        probs = {}
        if readable:
            rows = await asyncio.wrap_future(service.batcher.predict(np.stack([p.pixels for p in readable]), tta))
            answers = classifier.decide(rows, min_confidence)
            probs = {id(photo): (row, answer) for photo, row, answer in zip(readable, rows, answers)}
        images = []
        for photo in photos:
            if photo.error is not None:
                images.append({"file": photo.name, "error": photo.error})
                continue
            row, answer = probs[id(photo)]
            entry = {"file": photo.name, "class": classifier.class_names[int(row.argmax())], "unsure": answer is None,
                     "probabilities": {name: float(p) for name, p in zip(classifier.class_names, row)}}
            if view:
                entry["view"] = photo.view
            images.append(entry)
        body = {"images": images, "min_confidence": min_confidence, "tta": tta}
        if not readable:
            body["error"] = (images[0]["error"] if len(images) == 1 else
                             f"none of the {len(images)} images could be read")
            return _json(body, 422)
        return _json(body)

    async def explain(request):
        _only(request, ("map", "class", "name"))
        kind = _choice(request, "map", model.MAPS, "occlusion")
        class_name = request.query_params.get("class")
        if class_name is not None and class_name not in classifier.class_names:
            raise RequestError(400, f"the model has no class {class_name!r}; its classes: "
                                    f"{', '.join(classifier.class_names)}")
        uploads = await read_uploads(request, service.limits, _name_of, request.query_params.get("name"))
        if len(uploads) != 1:
            for upload in uploads:
                upload.close()
            raise RequestError(400, f"explain takes one image per request, got {len(uploads)}")
        photo, = await service.decode(uploads)
        if photo.error is not None:
            raise RequestError(422, photo.error)
        index, probability, heat = await asyncio.wrap_future(
            service.batcher.call(model.explain_photo, classifier, photo.pixels, class_name, kind))
        png = await asyncio.wrap_future(service.decoders.submit(model.overlay_png, photo.data, photo.pixels, heat))
        return Response(png, media_type="image/png", headers={
            **HEADERS, "X-Cnnfruit-Class-Index": str(index), "X-Cnnfruit-Probability": repr(probability)})

    async def refused(request, err):
        return _json({"error": err.message}, err.status)

    async def http_error(request, err):
        messages = {404: f"no such page or route: {request.url.path}",
                    405: f"{request.url.path} does not take {request.method}"}
        return _json({"error": messages.get(err.status_code, err.detail)}, err.status_code)

    async def defect(request, err):
        return _json({"error": f"internal error ({type(err).__name__}); the server logged it"}, 500)

    routes = [Route(path, page_file) for path in PAGE_FILES] + [
        Route("/healthz", healthz),
        Route("/api/model", describe),
        Route("/api/openapi.json", openapi_document),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/explain", explain, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={RequestError: refused, HTTPException: http_error,
                                                        Exception: defect})
