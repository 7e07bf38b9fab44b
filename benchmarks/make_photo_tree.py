"""Make a large photo tree for loading benchmarks: about 70,000 100x100 JPEGs in about 100 classes.

    python benchmarks/make_photo_tree.py /work/shared/fruits-360 /work/photo-tree

Fruits-360 itself has about 70,000 training and test photos of about 100 classes; this makes a
tree of that size and shape from the few real photos in SOURCE, for timing `read_image_folder`
without shipping or downloading the full set. Layout: DESTINATION/train/<class>/*.jpg and
DESTINATION/test/<class>/*.jpg, split 75/25 within each class as Fruits-360's Training/Test are.

Each new class takes one source class (round robin) and tints it with a colour of its own; each
file is a random source photo of that class, flipped or turned by a multiple of 90 degrees,
rotated by a small random angle and given a small random colour jitter, then saved as a JPEG of
about the source's quality. Every file's bytes differ (checked). The same arguments give the
same tree, whatever the number of worker processes.
"""
import argparse
import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

TEST_SHARE = 0.25  # Fruits-360: about 75% Training/, 25% Test/
JPEG_QUALITY = 94  # about what the Fruits-360 files use (luma table 2, 1, 1, 2, ...), 4:2:0
SOURCE_SUFFIXES = (".jpg", ".jpeg", ".png")
WHITE = (255, 255, 255)
SQUARE_SYMMETRIES = (None, *Image.Transpose)  # identity, 2 flips, 3 turns, 2 diagonal flips


def source_classes(source):
    """{class name: sorted photo paths} for every folder that directly holds photos, splits merged."""
    classes = {}
    for folder, _, files in sorted(os.walk(source)):
        photos = sorted(os.path.join(folder, f) for f in files if f.lower().endswith(SOURCE_SUFFIXES))
        if photos:
            classes.setdefault(os.path.basename(folder), []).extend(photos)
    return dict(sorted(classes.items()))


def tint(pixels, gains):
    """Shift colours while keeping the white background white: darken (255 - x) by gains."""
    return np.clip(255.0 - (255.0 - pixels) * gains, 0, 255).astype(np.uint8)


def make_photo(photo, rng, class_gains):
    transpose = SQUARE_SYMMETRIES[rng.integers(len(SQUARE_SYMMETRIES))]
    if transpose is not None:
        photo = photo.transpose(transpose)
    photo = photo.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR, fillcolor=WHITE)
    gains = class_gains * rng.uniform(0.93, 1.07, 3)
    return Image.fromarray(tint(np.asarray(photo, dtype=np.float32), gains))


def write_class(job):
    """Write one class's files; returns the sha256 digest of every file written."""
    destination, class_index, class_name, photos, counts, seed = job
    rng = np.random.default_rng([seed, class_index])
    class_gains = rng.uniform(0.45, 1.6, 3)
    cache, digests, seen = {}, [], set()
    for split, count in counts.items():
        folder = os.path.join(destination, split, class_name)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            while True:  # retry the (practically impossible) file that repeats an earlier one
                path = photos[rng.integers(len(photos))]
                if path not in cache:
                    with Image.open(path) as image:
                        cache[path] = image.convert("RGB")
                photo = make_photo(cache[path], rng, class_gains)
                target = os.path.join(folder, f"{i}_100.jpg")
                photo.save(target, quality=JPEG_QUALITY, subsampling="4:2:0")
                with open(target, "rb") as f:
                    digest = hashlib.sha256(f.read()).digest()
                if digest not in seen:
                    break
            seen.add(digest)
            digests.append(digest)
    return digests


def class_counts(count, classes):
    """Files per class (as even as possible), each cut 75/25 into train and test."""
    per_class = [count // classes + (k < count % classes) for k in range(classes)]
    return [{"train": n - round(TEST_SHARE * n), "test": round(TEST_SHARE * n)} for n in per_class]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder of real photos: <split>/<class>/*.jpg or <class>/*.jpg")
    parser.add_argument("destination", help="new folder to write (must not exist or be empty)")
    parser.add_argument("--count", type=int, default=70_000, help="number of files (default 70000)")
    parser.add_argument("--classes", type=int, default=100, help="number of class folders (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same tree")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: all cores)")
    args = parser.parse_args()

    sources = source_classes(args.source)
    if not sources:
        sys.exit(f"no photos ({', '.join(SOURCE_SUFFIXES)}) under {args.source}")
    if args.classes < 1 or args.count < args.classes:
        sys.exit("need at least 1 class and at least one file per class")
    if os.path.exists(args.destination) and os.listdir(args.destination):
        sys.exit(f"{args.destination} is not empty: give a new folder")
    names = list(sources)
    jobs = []
    for k, counts in enumerate(class_counts(args.count, args.classes)):
        base = names[k % len(names)]
        jobs.append((args.destination, k, f"{base} {k:03d}", sources[base], counts, args.seed))
    seen = set()
    with ProcessPoolExecutor(args.workers) as pool:
        for job, digests in zip(jobs, pool.map(write_class, jobs)):
            if seen.intersection(digests):
                sys.exit(f"class {job[2]} repeats a file of an earlier class: try another --seed")
            seen.update(digests)
    print(f"wrote {len(seen)} distinct JPEGs in {args.classes} classes to {args.destination}")


if __name__ == "__main__":
    main()
