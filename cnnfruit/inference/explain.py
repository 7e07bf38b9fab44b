"""Why the network answered what it did: input-gradient saliency and occlusion maps for one photo.

    explanation = explain(clf, "pear.jpg")                 # the predicted class, or class_name="Pear"
    fig = plots.explanation_figure(explanation, photo)     # maps over the photo

Saliency (Simonyan, Vedaldi and Zisserman, 2013): the gradient of the class's LOGIT with respect to
the photo's pixel values, through the network and its preprocessing, taken as the largest
absolute value over the three colour channels of each pixel. The logit rather than the
log-probability: the log-probability's gradient is the logit's minus the probability-weighted
gradients of all classes, so it says as much about the other classes as about this one, and once
the softmax saturates (the report's raw-pixel networks give 1.0 to almost every photo) it
vanishes: 1e5 times smaller than the logit's on a test pear (docs/insight.md), exactly zero once
the other probabilities fall below kernels.PROBABILITY_FLOOR. The logit's gradient says which pixels raise this class's score, whatever the others do.

Occlusion (Zeiler and Fergus, 2014): cover a square patch of the photo with its own mean colour,
at every position in turn, and record how far the class's probability falls; each pixel gets the
mean fall over the patches that covered it. Saliency is a local slope; occlusion is what a
visible change of the photo does, so the two can disagree.
"""
from dataclasses import dataclass

import numpy as np

from cnnfruit.errors import CnnfruitError
from cnnfruit.data.preprocess import LUMA_WEIGHTS

SCORES = ("logit", "log-probability")
STANDARDIZE_MIN_STD = 1e-6  # preprocess.to_inputs' guard against a flat image


@dataclass
class Explanation:
    image: np.ndarray  # uint8 (H, W, 3): the photo as the network saw it (32 x 32)
    class_name: str  # the class explained
    probability: float  # its probability for this photo
    predicted: str  # the network's answer
    confidence: float  # and its probability
    score: str  # "logit" or "log-probability": what the gradient is of
    gradient: np.ndarray  # (H, W, 3): d score / d pixel value (0..255, each colour channel)
    saliency: np.ndarray  # (H, W): max over channels of |gradient|
    occlusion: np.ndarray  # (H, W): mean fall of the class's probability when the pixel is covered
    patch: int
    stride: int


def preprocess_backward(pixels, dinputs, color, normalize):
    """The gradient with respect to the RGB pixel values (N, H, W, 3), given the gradient dinputs
    (N, C, H, W) with respect to preprocess.to_inputs(pixels, color, normalize): its chain rule."""
    pixels = np.asarray(pixels, dtype=np.float64)
    g = np.asarray(dinputs, dtype=np.float64)
    if normalize == "scale":
        g = g / 255.0
    elif normalize == "standardize":
        x = pixels @ LUMA_WEIGHTS.astype(np.float64) if color == "grey" else pixels
        x = x[:, None] if color == "grey" else x.transpose(0, 3, 1, 2)
        axes = (1, 2, 3)
        mean = x.mean(axis=axes, keepdims=True)
        std = x.std(axis=axes, keepdims=True)
        if (std < STANDARDIZE_MIN_STD).any():  # the guard holds the divisor fixed: only the mean moves
            g = (g - g.mean(axis=axes, keepdims=True)) / STANDARDIZE_MIN_STD
        else:
            z = (x - mean) / std
            g = (g - g.mean(axis=axes, keepdims=True) - z * (g * z).mean(axis=axes, keepdims=True)) / std
    elif normalize != "none":
        raise CnnfruitError(f"unknown normalization {normalize!r}")
    if color == "grey":
        return g[:, 0, :, :, None] * LUMA_WEIGHTS.astype(np.float64)
    return g.transpose(0, 2, 3, 1)


def input_gradient(classifier, images, class_index, score="logit"):
    """d score(class_index) / d pixel value, (N, H, W, 3) float64, for uint8 RGB images (N, H, W, 3)."""
    if score not in SCORES:
        raise CnnfruitError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    from cnnfruit.threads import compute_lock

    pixels = classifier.images(images)
    network = classifier.network
    with compute_lock():  # one unit of work on the classifier's network, results copied out
        network.forward(classifier.inputs(pixels))
        labels = np.full(len(pixels), class_index, dtype=np.int64)
        network.loss(labels)  # sets dlogits to probs - onehot, the gradient of -log p(class)
        if score == "logit":
            dlogits = np.zeros_like(network.dlogits)
            dlogits[:, class_index] = 1
        else:
            dlogits = -network.dlogits
        dinputs = network.input_gradient(dlogits)
    return preprocess_backward(pixels, dinputs, classifier.color, classifier.normalize)


def occlusion_map(classifier, image, class_index, patch=8, stride=2):
    """(H, W): the mean fall of class_index's probability over the patch positions covering each pixel.

    Each position's patch (patch x patch pixels) is filled with the image's mean colour; positions
    run every `stride` pixels and always include the last row and column.
    """
    image = classifier.images(image)[0]
    H, W, _ = image.shape
    if not 1 <= patch <= min(H, W) or stride < 1:
        raise CnnfruitError(f"the patch must be 1 to {min(H, W)} pixels and the stride at least 1")
    rows = sorted(set(range(0, H - patch + 1, stride)) | {H - patch})
    cols = sorted(set(range(0, W - patch + 1, stride)) | {W - patch})
    fill = image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    covered = np.repeat(image[None], len(rows) * len(cols), axis=0)
    for t, (i, j) in enumerate((i, j) for i in rows for j in cols):
        covered[t, i:i + patch, j:j + patch] = fill
    base = classifier.predict_proba(image[None])[0, class_index]
    drops = base - classifier.predict_proba(covered)[:, class_index].astype(np.float64)
    total, count = np.zeros((H, W)), np.zeros((H, W))
    for t, (i, j) in enumerate((i, j) for i in rows for j in cols):
        total[i:i + patch, j:j + patch] += drops[t]
        count[i:i + patch, j:j + patch] += 1
    return total / count


def explain(classifier, image, class_name=None, score="logit", patch=8, stride=2):
    """An Explanation of one photo (a file path or uint8 (H, W, 3)) for class_name (default: the predicted one)."""
    pixels = classifier.images(image)
    if len(pixels) != 1:
        raise CnnfruitError("explain takes one photo at a time")
    probs = classifier.predict_proba(pixels)[0]
    predicted = int(probs.argmax())
    if class_name is None:
        index = predicted
    elif class_name in classifier.class_names:
        index = classifier.class_names.index(class_name)
    else:
        raise CnnfruitError(f"the model has no class {class_name!r}; its classes: {', '.join(classifier.class_names)}")
    gradient = input_gradient(classifier, pixels, index, score)[0]
    return Explanation(
        pixels[0], classifier.class_names[index], float(probs[index]), classifier.class_names[predicted],
        float(probs[predicted]), score, gradient, np.abs(gradient).max(axis=2),
        occlusion_map(classifier, pixels, index, patch, stride), patch, stride,
    )
