"""What the server needs from cnnfruit: the one module of cnnfruit.serve that imports its internals.

Everything else in cnnfruit.serve goes through this module or the public API, so that where
cnnfruit keeps a name can change in one place. It holds the model's side of the server: loading
the checkpoint, turning uploaded bytes into the pixels `cnnfruit predict` would see, the pictures
the page shows (the network's view, a map over the photo), and the model's description.

Nothing here runs the network: every call into the classifier is made by the batcher's one
thread (batching.py). What runs here in the request threads is Pillow and numpy on one request's
own arrays, which share nothing.
"""
import functools
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

import cnnfruit
from cnnfruit import Classifier, CnnfruitError, load_image, summarize
from cnnfruit.config import TTA_MODES
from cnnfruit.inference.explain import explain
from cnnfruit.data.preprocess import LUMA_WEIGHTS, printable

__all__ = ["Classifier", "CnnfruitError", "TTA_MODES", "MAPS", "Photo", "decode", "view_png",
           "explain_photo", "overlay_png", "describe", "load"]

MAPS = ("occlusion", "saliency")

# Formats the server decodes, told by their first bytes before Pillow sees them: Pillow also
# opens formats that run other programs (EPS through Ghostscript) or that no phone writes.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WebP")
MAX_NAME = 200  # characters of a client's file name echoed back
PHOTO_SIDE = 512  # the long side of the photo under a map, in pixels


def load(path):
    """The classifier in a checkpoint, checked on the way in (a CnnfruitError as `cnnfruit eval` says it)."""
    return Classifier.load(path)


def display_name(name, fallback):
    """A client's file name as text that prints on one line, cut short; fallback if it has none."""
    text = printable(name or "") or fallback
    return text if len(text) <= MAX_NAME else text[:MAX_NAME - 3] + "..."


class _Upload(io.BytesIO):
    """An upload's bytes, which load_image's messages name by the client's file name.

    It has no `name` attribute, so Pillow never takes it for a path.
    """

    def __init__(self, data, label):
        super().__init__(data)
        self._label = label

    def __str__(self):
        return self._label


def _format(data):
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


@dataclass
class Photo:
    """One uploaded image: the pixels the network takes, or why there are none."""

    name: str
    data: bytes
    pixels: np.ndarray = None  # uint8 (S, S, 3), exactly as load_image gives them for the same file
    error: str = None
    view: str = None  # the network's view as a PNG data URL, when asked for


def decode(name, data, size):
    """A Photo from an upload's bytes, read by load_image as `cnnfruit predict` reads a file."""
    photo = Photo(name, data)
    if not data:
        photo.error = f"cannot read image {name}: the upload is empty"
    elif _format(data) is None:
        photo.error = f"cannot read image {name}: not an image format the server reads ({', '.join(FORMATS)})"
    else:
        try:
            photo.pixels = load_image(_Upload(data, name), size)
        except CnnfruitError as err:
            photo.error = str(err)
    return photo


def _png(image):
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def view_png(pixels, color):
    """The network's view of one image as a PNG: its S x S pixels, grey as the luma a grey model takes."""
    if color == "grey":
        luma = np.clip(np.rint(pixels.astype(np.float32) @ LUMA_WEIGHTS), 0, 255).astype(np.uint8)
        return _png(Image.fromarray(luma, "L"))
    return _png(Image.fromarray(pixels, "RGB"))


def explain_photo(classifier, pixels, class_name, kind):
    """(class index explained, its probability, the map (S, S) in 0..1): saliency or occlusion of
    one image, as `cnnfruit explain` computes them. Runs the network: the batcher's thread calls it."""
    explanation = explain(classifier, pixels, class_name)
    heat = explanation.occlusion if kind == "occlusion" else explanation.saliency
    heat = np.maximum(heat, 0)  # an occlusion that raised the probability is no evidence for the class
    peak = heat.max()
    heat = heat / peak if peak > 0 else np.zeros_like(heat)
    return classifier.class_names.index(explanation.class_name), explanation.probability, heat


def _photo(data, pixels):
    """The photo to draw a map over: upright, RGB, at most PHOTO_SIDE pixels on its long side.

    Only for looking at; decoded again after load_image has accepted the file, so its size is
    already bounded. A photo that Pillow's plain RGB conversion draws badly (16-bit, float) falls
    back to the network's own view, scaled up.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode in ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr", "1"):
                image.draft("RGB", (PHOTO_SIDE, PHOTO_SIDE))
                photo = ImageOps.exif_transpose(image).convert("RGB")
                photo.thumbnail((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.BILINEAR)
                return photo
    except (OSError, ValueError, SyntaxError):
        pass
    return Image.fromarray(pixels, "RGB").resize((256, 256), Image.Resampling.NEAREST)


@functools.cache
def _colours():
    """matplotlib's inferno as 256 uint8 RGB rows: dark where the map is low, bright where it peaks."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def overlay_png(data, pixels, heat):
    """The photo with the map (S, S, in 0..1) blended over it, stretched as the network's view is."""
    photo = _photo(data, pixels)
    stretched = Image.fromarray(heat.astype(np.float32), "F").resize(photo.size, Image.Resampling.BILINEAR)
    amount = np.clip(np.asarray(stretched), 0, 1)[..., None]
    colour = _colours()[np.rint(amount[..., 0] * 255).astype(np.uint8)].astype(np.float32)
    blended = np.asarray(photo, dtype=np.float32) * (1 - 0.75 * amount) + colour * (0.75 * amount)
    return _png(Image.fromarray(np.rint(blended).astype(np.uint8), "RGB"))


def describe(classifier):
    """The model's description for the page and GET /api/model: JSON-ready."""
    summary = summarize(classifier.arch)
    history = classifier.history
    data = classifier.trained_on.get("source")
    return {
        "file": os.path.basename(classifier.path) if classifier.path else None,
        "cnnfruit_version": cnnfruit.__version__,
        "class_names": list(classifier.class_names),
        "image_size": classifier.arch.image_size,
        "color": classifier.color,
        "normalize": classifier.normalize,
        "layers": [{"name": layer.name, "output_shape": list(layer.output_shape), "parameters": layer.parameters,
                    "forward_flops": layer.forward_flops} for layer in summary.layers],
        "total_parameters": summary.total_parameters,
        "forward_flops": summary.forward_flops,
        "training": {
            "settings": dict(classifier.config),
            "data": os.path.basename(data) if data else "the embedded fruit photos",
            "epochs": len(history.epochs) if history else None,
            "best_epoch": history.best_epoch if history else None,
            "test_accuracy": history.test_accuracy if history else None,
        },
    }
