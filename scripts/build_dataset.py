"""Rebuild cnnfruit's embedded dataset from an image folder (DIR/train/<class>/*, DIR/test/<class>/*).

    python scripts/build_dataset.py ../shared/fruits-360 cnnfruit/data/embedded/fruits360-32.npz

Every image goes through cnnfruit.data.preprocess.load_image (RGB, box-filtered to 32x32, uint8), the
same function that `--data` and `predict` use, so the shipped arrays equal what those paths give.
The dataset's LICENSE is copied next to the output.
"""
import argparse
import os
import shutil

import numpy as np

from cnnfruit.data.datasets import read_image_folder
from cnnfruit.files import write_atomically


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder with train/ and test/ subfolders of class folders")
    parser.add_argument("output", help="the .npz file to write")
    args = parser.parse_args()

    dataset = read_image_folder(args.source)
    if dataset.skipped:
        raise SystemExit(f"{dataset.skipped} unreadable images in {args.source}")
    arrays = dict(
        class_names=np.array(dataset.class_names),
        train_images=dataset.train.images,
        train_labels=dataset.train.labels.astype(np.uint8),
        test_images=dataset.test.images,
        test_labels=dataset.test.labels.astype(np.uint8),
        train_files=np.array([os.path.relpath(p, args.source) for p in dataset.train.paths]),
        test_files=np.array([os.path.relpath(p, args.source) for p in dataset.test.paths]),
    )
    write_atomically(args.output, lambda temporary: np.savez_compressed(temporary, **arrays))
    license_path = os.path.join(args.source, "LICENSE")
    if os.path.exists(license_path):
        target = os.path.join(os.path.dirname(args.output), "LICENSE")
        write_atomically(target, lambda temporary: shutil.copyfile(license_path, temporary))
    for name, part in (("train", dataset.train), ("test", dataset.test)):
        counts = np.bincount(part.labels, minlength=len(dataset.class_names))
        print(name, dict(zip(dataset.class_names, counts.tolist())))
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)")


if __name__ == "__main__":
    main()
