"""Turn an image file into the network's input: the one path every image takes.

The embedded dataset, `--data` folders and `cnnfruit predict` all call `load_image`, so a photo
gives the same tensor whichever way it reaches the network.
"""
import numpy as np

from .config import COLOR_MODES, IMAGE_SIZE, NORMALIZE_MODES
from .errors import CnnfruitError

# ITU-R BT.601 luma weights: what Pillow's "L" mode uses, kept in float32 instead of rounded.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def load_image(path, size=IMAGE_SIZE):
    """Decode any format Pillow reads, as RGB, area-averaged down to size x size uint8 (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            small = rgb.resize((size, size), Image.Resampling.BOX)
    except UnidentifiedImageError:
        raise CnnfruitError(f"cannot read image {path}: not an image format Pillow can decode") from None
    except OSError as err:
        raise CnnfruitError(f"cannot read image {path}: {err.strerror or err}") from None
    except (ValueError, SyntaxError) as err:  # what some decoders raise on corrupt data
        raise CnnfruitError(f"cannot read image {path}: {err}") from None
    return np.asarray(small, dtype=np.uint8)


def to_inputs(images, color="grey", normalize="none"):
    """uint8 RGB images (N, H, W, 3) -> float32 network inputs (N, C, H, W).

    grey: one luma channel in 0..255; rgb: three channels. normalize: none keeps 0..255 (the
    report's scale), scale divides by 255, standardize gives each image zero mean, unit variance.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CnnfruitError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    pixels = images.astype(np.float32)
    if color == "grey":
        x = (pixels @ LUMA_WEIGHTS)[:, None, :, :]
    elif color == "rgb":
        x = pixels.transpose(0, 3, 1, 2)
    else:
        raise CnnfruitError(f"unknown color mode {color!r}; choose from {', '.join(COLOR_MODES)}")
    if normalize == "scale":
        x = x / np.float32(255.0)
    elif normalize == "standardize":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        std = x.std(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) / np.maximum(std, np.float32(1e-6))
    elif normalize != "none":
        raise CnnfruitError(
            f"unknown normalization {normalize!r}; choose from {', '.join(NORMALIZE_MODES)}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)
