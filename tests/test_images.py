"""load_image on odd images: every Pillow mode, 16-bit and float, EXIF orientation, huge images,
and the promise that ordinary 8-bit files decode to pinned pixels."""
import hashlib
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from cnnfruit.data import preprocess
from cnnfruit.errors import CnnfruitError
from cnnfruit.data.preprocess import load_image

from helpers import class_folders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW_PHOTOS = os.path.join(REPO, "..", "shared", "fruits-360")
SIDE = 32  # the test images are 64 x 64, constant over 2 x 2 blocks: the box resize is then exact


def pear_like(side=SIDE):
    """A smooth grey gradient with a pear-shaped bright blob, 0..255 floats (side, side)."""
    y, x = np.mgrid[0:side, 0:side] / (side - 1)
    body = np.exp(-((x - 0.5) ** 2 + (y - 0.62) ** 2) / 0.06) + 0.6 * np.exp(-((x - 0.5) ** 2 + (y - 0.3) ** 2) / 0.02)
    return 255 * np.clip(0.25 * x + 0.15 * y + 0.7 * body, 0, 1)


def grey8():
    return np.rint(pear_like()).astype(np.uint8)


def colour8():
    g = pear_like()
    return np.rint(np.stack([g, 0.8 * g + 30, 255 - 0.7 * g], axis=-1)).clip(0, 255).astype(np.uint8)


def blocks(values):
    """Each pixel of values as a 2 x 2 block: 32 x 32 -> 64 x 64."""
    return np.repeat(np.repeat(values, 2, axis=0), 2, axis=1)


def as_rgb(grey):
    return np.repeat(grey[..., None], 3, axis=-1)


def image_from(mode, values):
    """A Pillow image of mode from an array of its raw channel values (any mode Pillow has)."""
    values = np.ascontiguousarray(blocks(values))
    return Image.frombytes(mode, (values.shape[1], values.shape[0]), values.tobytes())


def saved(image, path, **options):
    image.save(path, **options)
    return path


# ---------------------------------------------------------------------------------------------
# every mode: (mode, raw values, file suffix, the RGB the file stands for)


def palette():
    colours = np.array([[(37 * i) % 256, (91 * i + 40) % 256, (53 * i + 7) % 256] for i in range(16)], np.uint8)
    index = (grey8() // 16).astype(np.uint8)
    return index, colours


def mode_cases():
    g, rgb = grey8(), colour8()
    alpha = np.rint(np.linspace(0, 255, SIDE * SIDE)).astype(np.uint8).reshape(SIDE, SIDE)
    index, colours = palette()
    g16 = np.rint(pear_like() / 255 * 65535).astype(np.uint16)  # all 16 bits used, not v * 257
    cases = {
        "1": (g > 128, ".png", as_rgb(np.where(g > 128, 255, 0).astype(np.uint8))),
        "L": (g, ".png", as_rgb(g)),
        "LA": (np.stack([g, alpha], -1), ".png", as_rgb(g)),
        "P": (index, ".png", colours[index]),
        "PA": (np.stack([index, alpha], -1), ".tiff", colours[index]),
        "RGB": (rgb, ".png", rgb),
        "RGBA": (np.concatenate([rgb, alpha[..., None]], -1), ".png", rgb),
        "CMYK": (np.concatenate([255 - rgb, np.zeros_like(g)[..., None]], -1), ".tiff", rgb),  # K = 0: R = 255 - C
        "YCbCr": (np.stack([g, np.full_like(g, 128), np.full_like(g, 128)], -1), ".tiff", as_rgb(g)),  # grey
        "I;16": (g16, ".png", as_rgb((g16 >> 8).astype(np.uint8))),
        "I;16B": (g16.astype(">u2"), ".tiff", as_rgb((g16 >> 8).astype(np.uint8))),
        "I": (g16.astype(np.int32), ".tiff", as_rgb((g16 >> 8).astype(np.uint8))),
        "F": ((g / 255).astype(np.float32), ".tiff", as_rgb(g)),
    }
    return cases


def make_mode_image(mode, values):
    if mode == "1":
        return Image.fromarray(blocks(values))
    if mode in ("P", "PA"):
        image = image_from("P", values[..., 0] if mode == "PA" else values)
        _, colours = palette()
        image.putpalette(colours.tobytes())
        if mode == "PA":
            image = image.convert("PA")
            image.putalpha(image_from("L", values[..., 1]))
        return image
    return image_from(mode, values)


@pytest.mark.parametrize("mode", list(mode_cases()))
def test_every_pillow_mode_decodes_to_the_rgb_it_stands_for(tmp_path, mode):
    values, suffix, expected = mode_cases()[mode]
    path = saved(make_mode_image(mode, values), tmp_path / f"image{suffix}")
    with Image.open(path) as reopened:
        assert reopened.mode == mode  # the file really holds that mode
    np.testing.assert_array_equal(load_image(path), expected)


def test_sixteen_bit_grey_decodes_to_its_eight_bit_version(tmp_path):
    g = grey8()
    eight = saved(image_from("L", g), tmp_path / "pear8.png")
    sixteen = saved(image_from("I;16", g.astype(np.uint16) * 257), tmp_path / "pear16.png")  # v * 257: full range
    np.testing.assert_array_equal(load_image(sixteen), load_image(eight))
    assert load_image(sixteen).max() > 200  # not black, and (above) not a white square


def test_sixteen_bit_with_all_bits_used_is_within_rounding_of_v_over_257(tmp_path):
    g16 = np.rint(pear_like() / 255 * 65535).astype(np.uint16)
    pixels = load_image(saved(image_from("I;16", g16), tmp_path / "pear16.png"))[..., 0].astype(int)
    assert np.abs(pixels - np.rint(g16 / 257)).max() <= 1


def test_mode_i_clips_to_sixteen_bits(tmp_path):
    values = np.full((SIDE, SIDE), 40000, np.int32)
    values[:8], values[8:16] = -5, 70000
    pixels = load_image(saved(image_from("I", values), tmp_path / "i.tiff"))[..., 0]
    assert pixels[:8].max() == 0 and pixels[8:16].min() == 255 and np.all(pixels[16:] == 40000 >> 8)


def test_float_images_in_0_255_are_taken_as_such_and_nan_is_black(tmp_path):
    g = pear_like().astype(np.float32)  # max above 1: the 0..255 scale
    g[:4] = np.nan
    g[4:8] = np.inf
    g[8:12] = -3.0
    pixels = load_image(saved(image_from("F", g), tmp_path / "f.tiff"))[..., 0]
    assert np.all(pixels[:4] == 0) and np.all(pixels[4:8] == 255) and np.all(pixels[8:12] == 0)
    np.testing.assert_array_equal(pixels[12:], np.rint(g[12:]).astype(np.uint8))


def test_float_images_in_0_1_are_scaled_by_255(tmp_path):
    g = pear_like().astype(np.float32) / 255
    g[:4] = np.nan  # NaN does not count when deciding the scale
    pixels = load_image(saved(image_from("F", g), tmp_path / "f.tiff"))[..., 0]
    assert np.all(pixels[:4] == 0)
    np.testing.assert_array_equal(pixels[4:], np.rint(g[4:] * 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# EXIF orientation

# What each EXIF orientation asks for, as numpy operations on (rows, columns, channels).
UPRIGHT_BY_NUMPY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),  # stored turned left: turn it right (clockwise)
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),  # stored turned right: turn it left
}


def jpeg_with_orientation(path, pixels, orientation):
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    return path


def asymmetric():
    """No symmetry of the square maps it to itself: a bright corner and a bar along one side."""
    pixels = np.full((64, 64, 3), 40, np.uint8)
    pixels[:16, :16] = (250, 30, 30)
    pixels[40:, 8:56] = (30, 220, 60)
    pixels[:, 60:] = (20, 40, 230)
    return pixels


def shrunk(pixels):
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((32, 32), Image.Resampling.BOX))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_the_photo_upright(tmp_path, orientation):
    path = jpeg_with_orientation(tmp_path / "tagged.jpg", asymmetric(), orientation)
    with Image.open(path) as image:  # the pixels as stored, whatever the tag says
        stored = np.asarray(image.convert("RGB"))
    # turned before the resize: Pillow resizes one axis, then the other, rounding in between
    np.testing.assert_array_equal(load_image(path), shrunk(UPRIGHT_BY_NUMPY[orientation](stored)))
    with Image.open(path) as image:  # and the same as Pillow's own exif_transpose
        reference = ImageOps.exif_transpose(image).convert("RGB").resize((32, 32), Image.Resampling.BOX)
    np.testing.assert_array_equal(load_image(path), np.asarray(reference))


def test_exif_orientation_in_a_png(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = saved(Image.fromarray(asymmetric()), tmp_path / "tagged.png", exif=exif.tobytes())
    np.testing.assert_array_equal(load_image(path), shrunk(np.rot90(asymmetric(), -1)))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_damaged_exif_keeps_the_pixels_as_stored(tmp_path):
    plain = load_image(jpeg_with_orientation(tmp_path / "plain.jpg", asymmetric(), None))
    damaged = tmp_path / "damaged.jpg"
    Image.fromarray(asymmetric()).save(damaged, quality=95, exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xffgarbage")
    np.testing.assert_array_equal(load_image(damaged), plain)


# ---------------------------------------------------------------------------------------------
# huge images


def png_of_zeros(path, width, height):
    """A valid 1-bit grey PNG of width x height black pixels, written without decoding it: a few
    kilobytes on disk for hundreds of millions of pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_a_clean_error_and_pillow_is_left_alone(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    bomb = png_of_zeros(tmp_path / "bomb.png", 20000, 20000)
    assert os.path.getsize(bomb) < 200_000
    with pytest.raises(CnnfruitError) as error:
        load_image(bomb)
    assert str(error.value) == (f"cannot read image {bomb}: more pixels than Pillow will decode "
                                "(a decompression bomb?); shrink it first")
    assert Image.MAX_IMAGE_PIXELS == limit


def test_images_above_cnnfruits_own_limit_are_refused_before_decoding(tmp_path):
    big = png_of_zeros(tmp_path / "big.png", 9000, 8000)  # 72 million: under Pillow's limits
    with pytest.raises(CnnfruitError) as error:
        load_image(big)
    assert str(error.value) == (f"cannot read image {big}: 9000 x 8000 is more than the 64,000,000 "
                                "pixels load_image decodes; shrink it first")
    small = png_of_zeros(tmp_path / "small.png", 20, 10)
    with pytest.raises(CnnfruitError, match="20 x 10 is more than the 199 pixels"):
        load_image(small, max_pixels=199)
    assert np.all(load_image(small, max_pixels=200) == 0)


def test_skip_bad_skips_a_decompression_bomb(tmp_path):
    from cnnfruit.data.datasets import read_image_folder

    root = class_folders(tmp_path / "fruits")
    bomb = png_of_zeros(root / "kiwi" / "bomb.png", 20000, 20000)
    with pytest.raises(CnnfruitError) as error:
        read_image_folder(root, cache_dir=False)
    assert str(error.value) == (f"cannot read image {bomb}: more pixels than Pillow will decode (a decompression "
                                "bomb?); shrink it first (skip_bad skips unreadable images)")
    dataset = read_image_folder(root, cache_dir=False, skip_bad=True)
    assert dataset.skipped == 1 and len(dataset.train) + len(dataset.test) == 15


# ---------------------------------------------------------------------------------------------
# ordinary 8-bit files: exactly the pixels of the code the embedded dataset was built with


def load_image_before(path, size=32):
    """load_image as it was when the embedded dataset was built."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def eight_bit_files(folder):
    rng = np.random.default_rng(7)
    paths = []
    for width, height in ((100, 100), (57, 41), (33, 64), (200, 150), (16, 16), (31, 97)):
        noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        smooth = np.rint(np.linspace(0, 255, width))[None, :, None].astype(np.uint8) + np.zeros_like(noise)
        for name, pixels in (("noise", noise), ("smooth", smooth)):
            for mode, suffix in (("RGB", ".jpg"), ("RGB", ".png"), ("L", ".jpg"), ("L", ".png")):
                image = Image.fromarray(pixels).convert(mode)
                paths.append(saved(image, folder / f"{name}-{width}x{height}-{mode}{suffix}"))
    return paths


def test_eight_bit_jpeg_and_png_decode_as_before(tmp_path):
    for path in eight_bit_files(tmp_path):
        for size in (32, 20):
            np.testing.assert_array_equal(load_image(path, size), load_image_before(path, size), err_msg=str(path))


def arithmetic_images():
    """Images built from integer arithmetic alone, so their PNG bytes are the same everywhere."""
    y, x = np.mgrid[0:75, 0:90]
    rgb = np.stack([(7 * x + 3 * y) % 256, (x * y) % 256, (255 - 2 * x + y) % 256], -1).astype(np.uint8)
    return {"rgb": Image.fromarray(rgb), "grey": Image.fromarray(rgb[..., 1])}


# sha256 of load_image's pixels for arithmetic_images() saved as PNG. Should another Pillow change
# these, the embedded dataset would differ from what load_image gives for its own photos.
PINNED = {
    "rgb": "eb56eec9f15d00679641ed5376c9bdde783170567e7b67c903507c7bd0e428d2",
    "grey": "54fe801128ff4b23766522018e6ca99b64e156cb267175ae133b5c9388ad03a1",
}


@pytest.mark.parametrize("name", list(PINNED))
def test_eight_bit_pixels_are_pinned(tmp_path, name):
    path = saved(arithmetic_images()[name], tmp_path / f"{name}.png")
    assert hashlib.sha256(load_image(path).tobytes()).hexdigest() == PINNED[name]


@pytest.mark.skipif(not os.path.isdir(RAW_PHOTOS), reason="the raw photos are not beside this checkout")
def test_every_raw_photo_gives_its_embedded_pixels():
    from cnnfruit.data import datasets as data

    with np.load(data.embedded_path(), allow_pickle=False) as z:
        for part in ("train", "test"):
            for name, image in zip(z[f"{part}_files"], z[f"{part}_images"]):
                np.testing.assert_array_equal(load_image(os.path.join(RAW_PHOTOS, name)), image, err_msg=name)


def test_printable_escapes_what_would_break_a_line_or_a_terminal():
    assert preprocess.printable("photos/Pear\udcff\nnew\tline é.jpg") == "photos/Pear\\xff\\nnew\\tline é.jpg"
    assert preprocess.printable("/plain/path/0_100.jpg") == "/plain/path/0_100.jpg"
