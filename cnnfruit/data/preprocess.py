"""Turn an image file into the network's input: the one path every image takes.

The embedded dataset, `--data` folders and `cnnfruit predict` all call `load_image`, so a photo
gives the same tensor whichever way it reaches the network. `load_image` takes these steps:

1. Size, read from the header before any pixel is decoded: more than `MAX_PIXELS` (64 million,
   e.g. 8000 x 8000) is refused with a `CnnfruitError`. That is above what nearly every camera
   writes (full-frame cameras reach about 61 million; phones' 108 and 200 megapixel modes and
   medium-format backs do not fit, and need shrinking first, which loses nothing at 32 x 32),
   and it bounds one decode to about 200 MB (RGB) in each of the loader's workers. A small PNG
   that unpacks to 20000 x 20000 (a decompression bomb) is refused the same way. Pillow's own
   limit, `Image.MAX_IMAGE_PIXELS`, is left alone: using cnnfruit changes no global state.
2. EXIF orientation: a photo whose EXIF says "turn me" (how phones store portrait shots) is
   turned upright, by the transposition Pillow's `ImageOps.exif_transpose` uses. Unreadable EXIF
   counts as no orientation: the pixels are still fine.
3. High bit depths to 8 bits, before anything else (Pillow's `convert("RGB")` clips them at 255,
   which would turn 16-bit photos into white squares):
   - `I;16` and its byte orders (16-bit grey PNG, TIFF, PGM): the high byte, v >> 8. Pillow reads
     16-bit colour files that way, so a 16-bit grey and a 16-bit colour file of one scene agree,
     and a 16-bit image made from an 8-bit one (v * 257) gives back exactly the 8-bit values.
   - `I` (32-bit integers) is taken as 16-bit data, clipped to 0..65535, then as `I;16`: 16-bit
     files are where `I` images come from (older Pillows open 16-bit PNGs as `I`, and Pillow
     writes `I` as 16-bit). The scale must not depend on the pixels: a dark photo stays dark.
   - `F` (32-bit floats, e.g. float TIFFs) has no one convention, so the pixels decide: if no
     finite value exceeds 1, the image is 0..1 (the usual one for float images and numpy code)
     and is multiplied by 255; otherwise it is 0..255, the scale Pillow's own `F` to 8-bit
     conversion assumes. Then clipped to 0..255 and rounded; NaN is 0. The rule can only
     misjudge a 0..255 image darker than 1/255 everywhere, which is black either way.
4. RGB: every other mode through Pillow's `convert("RGB")`: alpha is dropped (not
   blended), palettes are looked up, CMYK and YCbCr by Pillow's formulas.
5. Area average (box filter) down to size x size: uint8 (H, W, 3).

Steps 1-3 leave ordinary 8-bit RGB and grey files alone, so they give exactly the pixels of a plain
`convert("RGB")` and area average (tests/test_images.py pins them): the embedded dataset was built
from them. `PREPROCESS_VERSION`
names this behaviour and the decoded-image cache keys on it: raise it whenever `load_image`
could give other pixels for some file.
"""
import numpy as np

from cnnfruit.config import COLOR_MODES, IMAGE_SIZE, NORMALIZE_MODES
from cnnfruit.errors import CnnfruitError

PREPROCESS_VERSION = 1
MAX_PIXELS = 64_000_000

# ITU-R BT.601 luma weights: what Pillow's "L" mode uses, kept in float32 instead of rounded.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the PIL.Image.Transpose that makes it upright, as ImageOps.exif_transpose.
UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
           6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def printable(path):
    """path as text that prints on one line: undecodable bytes and control characters escaped.

    os.listdir gives names that are not UTF-8 as lone surrogates, which cannot be printed, and a
    newline in a name would split a message across lines.
    """
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def load_image(path, size=IMAGE_SIZE, max_pixels=MAX_PIXELS):
    """Decode any format Pillow reads, as RGB, area-averaged down to size x size uint8 (H, W, 3).

    The steps, and how 16-bit and float images are scaled, are in this module's docstring.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise CnnfruitError(
                    f"cannot read image {printable(path)}: {width} x {height} is more than the "
                    f"{max_pixels:,} pixels load_image decodes; shrink it first"
                )
            rgb = _to_rgb(_upright(image))
            small = rgb.resize((size, size), Image.Resampling.BOX)
    except CnnfruitError:
        raise
    except Image.DecompressionBombError:
        raise CnnfruitError(
            f"cannot read image {printable(path)}: more pixels than Pillow will decode "
            f"(a decompression bomb?); shrink it first"
        ) from None
    except UnidentifiedImageError:
        raise CnnfruitError(
            f"cannot read image {printable(path)}: not an image format Pillow can decode"
        ) from None
    except OSError as err:
        raise CnnfruitError(f"cannot read image {printable(path)}: {err.strerror or err}") from None
    except (ValueError, SyntaxError) as err:  # what some decoders raise on corrupt data
        raise CnnfruitError(f"cannot read image {printable(path)}: {err}") from None
    return np.asarray(small, dtype=np.uint8)


def _orientation(image):
    """The EXIF orientation, 1 (as stored) when there is none or it cannot be read."""
    if image.format in ("JPEG", "MPO") and "exif" not in image.info:
        return 1  # open() has read every APP segment: no EXIF (and getexif costs a decode's time)
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - EXIF is metadata: damaged EXIF must not lose the pixels
        return 1


def _upright(image):
    from PIL import Image

    transpose = UPRIGHT.get(_orientation(image))
    return image if transpose is None else image.transpose(Image.Transpose[transpose])


def _to_rgb(image):
    """8-bit RGB; 16-bit, 32-bit integer and float grey scaled as the module docstring says."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        values = np.asarray(image)
        if image.mode == "I":
            values = np.clip(values, 0, 65535)
        grey = (values >> 8).astype(np.uint8)
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        top = np.max(values, where=np.isfinite(values), initial=0.0)
        scaled = values * np.float32(255.0) if top <= 1.0 else values
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        grey = np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
    elif image.mode == "RGB":
        return image  # convert("RGB") would only copy it
    else:
        return image.convert("RGB")
    return Image.fromarray(grey).convert("RGB")


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
        # Means summed in float64: a float32 sum leaves a residue near 1e-5 on a flat image, above
        # the 1e-6 floor, which would turn a flat grey photo into +-1 noise instead of 0 (the ONNX
        # export computes the same way, so both agree on such images too).
        axes = (1, 2, 3)
        mean = x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
        centred = x - mean
        variance = (centred * centred).mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
        x = centred / np.maximum(np.sqrt(variance), np.float32(1e-6))
    elif normalize != "none":
        raise CnnfruitError(
            f"unknown normalization {normalize!r}; choose from {', '.join(NORMALIZE_MODES)}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)
