"""Small image folders for tests: a few solid-colour-plus-noise images per class."""
import os

import numpy as np
from PIL import Image

CLASS_COLOURS = {"apple": (200, 40, 40), "kiwi": (60, 160, 40)}


def make_image_folder(root, per_class=6, size=40, seed=0, fmt="png"):
    """root/train/<class>/*.fmt and root/test/<class>/*.fmt; returns root."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, colour in CLASS_COLOURS.items():
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for k in range(per_class):
                noise = rng.integers(-40, 40, (size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{k}.{fmt}"))
    return str(root)
