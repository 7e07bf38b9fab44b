"""A trained network bound to its class names and its preprocessing: what eval, predict and export use.

A Classifier takes images as they come from files, uint8 RGB (N, H, W, 3) as load_image makes
them, or the files themselves, and applies the colour mode and normalisation it was trained with.
There is no way to hand it already-preprocessed tensors, so a prediction can never be made on
inputs prepared the wrong way.
"""
import numbers
import os
from dataclasses import dataclass

import numpy as np

from cnnfruit import checkpoint
from cnnfruit.nn import memory
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.inference.metrics import classification_report
from cnnfruit.nn.network import Network
from cnnfruit.data.preprocess import load_image, to_inputs
from cnnfruit.threads import compute_lock


@dataclass
class Evaluation:
    """Scores of a classifier on one labelled set of images."""

    accuracy: float
    loss: float  # mean cross-entropy per image
    labels: np.ndarray
    predictions: np.ndarray
    class_names: list
    probabilities: np.ndarray = None  # (N, M), averaged over the views with test-time augmentation
    tta: str = "none"

    def report(self):
        """A JSON-ready dict: accuracy, per-class precision/recall/support, the confusion matrix."""
        return classification_report(self.labels, self.predictions, self.class_names)


@dataclass
class FilePrediction:
    """One file's prediction, or why it could not be read."""

    path: str
    probabilities: np.ndarray = None  # (M,), None when the file could not be read
    class_name: str = None
    error: str = None  # the reason the file could not be read


class Classifier:
    """A network, its class names and its preprocessing (color, normalize), always together."""

    def __init__(self, arch, params, class_names, color="grey", normalize="none", config=None, history=None,
                 trained_on=None, *, data=None):
        self.arch = arch
        self.class_names = list(class_names)
        self.color = color
        self.normalize = normalize
        self.config = config or {}  # the training settings, when known
        self.history = history  # the training History, when known
        # Where the training images came from (Checkpoint.trained_on), when known; the keyword `data`
        # is taken as another name for it, so that code that passes it by that name keeps working.
        self.trained_on = trained_on or data or {}
        self.path = None  # the checkpoint it was loaded from, if any
        memory.check_prediction(arch, next(iter(params.values())).dtype.itemsize)
        self.network = Network(arch, params)

    @property
    def params(self):
        return self.network.params

    @classmethod
    def load(cls, path):
        """The classifier in a checkpoint (model.npz or best.npz), checked on the way in."""
        classifier = cls.from_checkpoint(checkpoint.load(path))
        classifier.path = str(path)
        return classifier

    @classmethod
    def from_checkpoint(cls, ckpt):
        from cnnfruit.history import History

        history = History.from_dict(ckpt.history, source="the checkpoint's history") if ckpt.history else None
        return cls(ckpt.arch, ckpt.params, ckpt.class_names, ckpt.color, ckpt.normalize, ckpt.config, history,
                   ckpt.trained_on)

    def save(self, path):
        """A checkpoint with the weights, class names and preprocessing (no training state to resume)."""
        try:
            checkpoint.save(path, checkpoint.Checkpoint(
                self.arch, self.class_names, self.params, color=self.color, normalize=self.normalize,
                config=dict(self.config), history=self.history.to_dict() if self.history else {},
                trained_on=dict(self.trained_on),
            ))
        except OSError as err:
            raise CnnfruitError(f"cannot write checkpoint {path}: {err.strerror or err}") from None

    def export(self, path, opset=None):
        """Write this classifier, preprocessing included, as an ONNX file (needs cnnfruit[onnx]).

        The file takes uint8 RGB images (N, H, H, 3) as `images` and gives `probabilities` (N, M)
        and `class_index` (N,); its metadata holds the class names. Returns the onnx.ModelProto.
        """
        from cnnfruit.inference.onnx_export import DEFAULT_OPSET, export_onnx

        return export_onnx(self.arch, self.params, self.class_names, self.color, self.normalize, path,
                           opset or DEFAULT_OPSET)

    def images(self, images):
        """uint8 RGB images (N, H, W, 3) from an array of them, one image, or a list of file paths."""
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        if isinstance(images, (list, tuple)) and any(_is_path(i) for i in images):
            odd = next((n for n, i in enumerate(images) if not _is_path(i)), None)
            if odd is not None:
                raise CnnfruitError(f"a list of images must be all file paths or all arrays; item {odd} is a "
                                    f"{type(images[odd]).__name__} among paths")
            return np.stack([load_image(path, self.arch.image_size) for path in images])
        if isinstance(images, (list, tuple)) and not images:
            return np.zeros((0, self.arch.image_size, self.arch.image_size, 3), np.uint8)
        try:
            pixels = np.asarray(images)
        except (TypeError, ValueError) as err:  # a ragged list of arrays, say
            raise CnnfruitError(f"expected uint8 RGB images of shape (N, {self.arch.image_size}, "
                                f"{self.arch.image_size}, 3) or file paths; got {type(images).__name__}: {err}") from None
        if pixels.ndim == 3:
            pixels = pixels[None]
        size = self.arch.image_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
            raise CnnfruitError(
                f"expected uint8 RGB images of shape (N, {size}, {size}, 3), as load_image gives them, or file "
                f"paths; got {pixels.dtype} {pixels.shape}"
            )
        return pixels

    def inputs(self, images):
        """The network's float32 inputs (N, C, H, W) for images, with this classifier's preprocessing."""
        return to_inputs(self.images(images), self.color, self.normalize)

    def predict_proba(self, images, batch_size=256, tta="none"):
        """Class probabilities (N, M), columns in the order of class_names.

        tta "flip" or "rotate": the mean of the probabilities of 2 or 8 views of each image (tta.py).
        """
        from cnnfruit.inference.tta import views

        batch_size = check_batch_size(batch_size)
        pixels = self.images(images)
        probs = [self._probabilities(view, batch_size) for view in views(pixels, tta)]
        return probs[0] if len(probs) == 1 else np.mean(probs, axis=0, dtype=np.float64).astype(probs[0].dtype)

    def _probabilities(self, pixels, batch_size):
        """Softmax probabilities (N, M) of uint8 images, batch by batch.

        Each batch is preprocessed when its turn comes (no float copy of the whole set), and its
        forward pass is one unit of work under the compute lock, its probabilities copied out before
        the lock is released: threads that share this classifier, and so its network's buffers, take
        turns batch by batch.
        """
        out = np.empty((len(pixels), len(self.class_names)), self.network.dtype)
        for start in range(0, len(pixels), batch_size):
            chunk = slice(start, start + batch_size)
            with compute_lock():
                out[chunk] = self.network.predict_proba(pixels[chunk], batch_size, inputs=self.inputs)
        return out

    def decide(self, probs, min_confidence=0.0):
        """The class name of each row of probs (N, M), or None where its probability is below min_confidence."""
        min_confidence = check_confidence(min_confidence)
        try:
            probs = np.asarray(probs)
        except (TypeError, ValueError):  # a ragged list
            probs = np.asarray(None)
        if probs.size == 0 and probs.ndim in (1, 2):
            return []
        if probs.ndim != 2 or probs.shape[1] != len(self.class_names) or probs.dtype.kind not in "fiu":
            raise CnnfruitError(f"expected probabilities (N, {len(self.class_names)}), one column per class; got "
                                f"{probs.dtype} {probs.shape}")
        best = probs.argmax(axis=1)
        return [self.class_names[m] if p[m] >= min_confidence else None for m, p in zip(best, probs)]

    def predict_files(self, paths, batch_size=256, tta="none"):
        """A FilePrediction for each file, in order; a file that cannot be read gets its reason in
        `error` instead of stopping the others. Files are read batch_size at a time."""
        batch_size = check_batch_size(batch_size)
        if _is_path(paths):  # one path is one file, not its characters
            paths = [paths]
        elif not isinstance(paths, (list, tuple)):
            raise CnnfruitError(f"predict_files takes a list of file paths, got {type(paths).__name__}")
        odd = next((n for n, path in enumerate(paths) if not _is_path(path)), None)
        if odd is not None:
            raise CnnfruitError(f"predict_files takes file paths; item {odd} is a {type(paths[odd]).__name__}")
        results = []
        for start in range(0, len(paths), batch_size):
            chunk = [FilePrediction(path) for path in paths[start:start + batch_size]]
            pixels = []
            for result in chunk:
                try:
                    pixels.append(load_image(result.path, self.arch.image_size))
                except CnnfruitError as err:
                    result.error = str(err)
            if pixels:
                readable = [result for result in chunk if result.error is None]
                for result, p in zip(readable, self.predict_proba(np.stack(pixels), batch_size, tta)):
                    result.probabilities, result.class_name = p, self.class_names[int(p.argmax())]
            results += chunk
        return results

    def predict(self, images, batch_size=256, tta="none", min_confidence=0.0):
        """The most likely class name of each image; None (unsure) where its probability is below min_confidence."""
        check_confidence(min_confidence)  # before the work
        return self.decide(self.predict_proba(images, batch_size, tta), min_confidence)

    def evaluate(self, split, batch_size=256, tta="none"):
        """Accuracy, loss, predictions and probabilities on a labelled Split (e.g. dataset.test).

        With tta, the predictions are those of the averaged probabilities, and the loss is their
        cross-entropy, each probability counted as at least kernels.PROBABILITY_FLOOR.
        """
        from cnnfruit.inference.tta import check_mode

        batch_size, tta = check_batch_size(batch_size), check_mode(tta)
        try:
            labels = np.asarray(split.labels)
        except (AttributeError, TypeError, ValueError):
            raise CnnfruitError(f"evaluate takes a labelled Split (such as dataset.test), got "
                                f"{type(split).__name__}") from None
        whole = labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and bool(np.all(labels == np.round(labels))))
        if labels.ndim != 1 or not whole or \
                (len(labels) and not 0 <= labels.min() <= labels.max() < len(self.class_names)):
            raise CnnfruitError(f"labels must be class indices from 0 to {len(self.class_names) - 1}")
        labels = labels.astype(np.int64)
        if not len(labels):
            raise CnnfruitError("there are no images to evaluate")
        pixels = self.images(split.images)
        if len(pixels) != len(labels):
            raise CnnfruitError(f"the split has {len(pixels)} images and {len(labels)} labels")
        if tta == "none":
            probs = np.empty((len(labels), len(self.class_names)), self.network.dtype)
            with compute_lock():  # the whole pass is one unit of work: its loss is the mean over every image
                loss, accuracy, predictions = self.network.evaluate(pixels, labels, batch_size, inputs=self.inputs,
                                                                    probabilities=probs)
        else:
            from cnnfruit.nn.kernels import PROBABILITY_FLOOR

            probs = self.predict_proba(pixels, batch_size, tta)
            predictions = probs.argmax(axis=1)
            accuracy = float((predictions == labels).mean())
            true = probs[np.arange(len(labels)), labels].astype(np.float64)
            loss = float(-np.log(np.maximum(true, PROBABILITY_FLOOR)).mean())
        return Evaluation(accuracy, loss, labels, predictions, self.class_names, probs, tta)

    def training_data(self, folder=None):
        """The Dataset this classifier was trained on, read again as it was read then (the embedded
        set if it records none); a SettingError naming {data} when its folder is gone. folder: read
        that folder instead, the same way (say, the training images moved elsewhere)."""
        from cnnfruit.data.sources import DataSource

        return DataSource.recorded(self.trained_on, self.name, folder=folder).load()

    def split(self, name, dataset=None):
        """The labelled Split `name` ("test", "train" or "val") of dataset, by default the training data.

        train and val are cut again with the run's seed and validation share, so they need the very
        images the run had: a dataset whose digest differs from the recorded one is refused.
        """
        from cnnfruit.data.sources import check_classes, same_images
        from cnnfruit.data.splits import named_split

        dataset = dataset if dataset is not None else self.training_data()
        check_classes(dataset, self.class_names, self.name)
        if name in ("train", "val") and not same_images(dataset, self.trained_on):
            raise SettingError("the images in {folder} differ from those {model} was trained on, so its {value} split "
                               "cannot be cut again; use {split} test", folder=dataset.source or "the embedded set",
                               model=self.name, value=name)
        if name == "val" and self.config and self.config.get("val_fraction") == 0:
            raise SettingError("{model} was trained with {val_fraction} 0: it held out no validation images; use "
                               "{split} test or {split} train", model=self.name)
        return named_split(dataset, name, self.config)

    @property
    def name(self):
        """How messages name this classifier: its file, once loaded from one."""
        return self.path or "the model"

    def feature_maps(self, image, layer=None):
        """A conv layer's ReLU maps (K, P, Q) of one image (uint8 (H, W, 3) or a file path): the first
        conv layer's, or `layer`'s, by name (conv1) or by position among the conv layers (0, 1, ...)."""
        pixels = self.images(image)
        if len(pixels) != 1:
            raise CnnfruitError(f"feature_maps takes one image, got {len(pixels)}")
        with compute_lock():
            return self.network.feature_maps(self.inputs(pixels), layer)[0]


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def check_batch_size(batch_size):
    """A batch size as the loops need it: a whole number, 1 or more (0 stops range(), and a negative
    one would leave the probabilities' rows unwritten)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise SettingError("{batch_size} must be a whole number, 1 or more, got {value!r}", value=batch_size)
    return int(batch_size)


def check_confidence(min_confidence):
    """A probability threshold: a number from 0 to 1 (a string cannot be compared with probabilities)."""
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, numbers.Real) or \
            not 0 <= min_confidence <= 1:
        raise SettingError("{min_confidence} must be a number from 0 to 1, got {value!r}", value=min_confidence)
    return float(min_confidence)
