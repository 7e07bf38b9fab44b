"""The PyTorch baseline of the VGG-style stack: a small VGG-style net trained on the CIFAR-10 sample.

    /work/torch-venv/bin/python benchmarks/torch_vgg.py [--data /work/shared/cifar-10-sample]
        [--epochs 10] [--batch-size 64] [--lr 1e-3] [--seed 0] [--threads N]

The reference that cnnfruit's deeper networks are measured against, in plain PyTorch and
independent of cnnfruit (it imports nothing from it). Needs only torch==2.13.0, numpy and pillow.

Data: DATA/train/<class>/*.jpg and DATA/test/<class>/*.jpg, 32 x 32 RGB, classes in sorted order.
Every JPEG is decoded once with Pillow at the start (timed on its own line), and each image is
standardised on its own: minus its mean, divided by its standard deviation over all pixels and
channels, floored at 1/sqrt(3 * 32 * 32) so that a flat image does not divide by zero.

Network (PyTorch's default initialisation):
    conv 32 3x3 same, ReLU -> conv 32 3x3 same, ReLU -> max-pool 2
    -> conv 64 3x3 same, ReLU -> conv 64 3x3 same, ReLU -> max-pool 2
    -> dense 256, ReLU -> dense 10 (logits; softmax cross-entropy, the mean over the batch)
Training: Adam (lr 1e-3 by default, PyTorch's other defaults), shuffled mini-batches (the last one
may be smaller), each training image flipped left-right with probability 1/2 each time it is drawn.

Each epoch prints one line: the mean training loss and the training accuracy, both taken on the
flipped images during the epoch's own steps, and the seconds the epoch's training took (loading
and test scoring excluded). At the end: the test accuracy (no flips) and the total training time,
the sum of the epoch times. --threads sets torch.set_num_threads; left out, torch's default stays.
"""
import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

SIDE = 32


def load_split(folder, classes=None):
    """(images uint8 N x 32 x 32 x 3, labels int64 N, class names) for one split folder."""
    if classes is None:
        classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    images, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(folder, name)
        for file in sorted(os.listdir(class_dir)):
            if not file.lower().endswith((".jpg", ".jpeg")):
                continue
            with Image.open(os.path.join(class_dir, file)) as photo:
                pixels = np.asarray(photo.convert("RGB"), dtype=np.uint8)
            if pixels.shape != (SIDE, SIDE, 3):
                raise SystemExit(f"{class_dir}/{file}: {pixels.shape[1]}x{pixels.shape[0]}, "
                                 f"expected {SIDE}x{SIDE}")
            images.append(pixels)
            labels.append(label)
    if not images:
        raise SystemExit(f"no JPEG photos under {folder}/<class>/")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def standardise(images):
    """uint8 N x H x W x C -> float32 N x C x H x W, each image to mean 0 and std 1 (floored)."""
    x = images.astype(np.float32)
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=1)
    std = np.maximum(flat.std(axis=1), np.float32(1.0 / np.sqrt(flat.shape[1])))
    x = (x - mean[:, None, None, None]) / std[:, None, None, None]
    assert x.dtype == np.float32
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def build_model(classes):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (SIDE // 4) * (SIDE // 4), 256), nn.ReLU(),
        nn.Linear(256, classes),
    )


def train_epoch(model, optimizer, loss_fn, x, y, batch_size, generator):
    """One pass over the shuffled training set with random flips: (mean loss, accuracy)."""
    model.train()
    order = torch.randperm(len(y), generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        index = order[start:start + batch_size]
        xb, yb = x[index], y[index]
        flip = torch.rand(len(index), generator=generator) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        logits = model(xb)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(index)
        correct += int((logits.argmax(dim=1) == yb).sum())
    return total_loss / len(y), correct / len(y)


def accuracy(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            correct += int((model(x[start:start + batch]).argmax(dim=1) == y[start:start + batch]).sum())
    return correct, len(y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/cifar-10-sample",
                        help="folder with train/<class>/*.jpg and test/<class>/*.jpg")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads; default: torch's own choice")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        parser.error("--epochs and --batch-size must be at least 1, --lr positive")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    train_images, train_labels, classes = load_split(os.path.join(args.data, "train"))
    test_images, test_labels, _ = load_split(os.path.join(args.data, "test"), classes)
    decoded = time.perf_counter() - started
    x_train, y_train = standardise(train_images), torch.from_numpy(train_labels)
    x_test, y_test = standardise(test_images), torch.from_numpy(test_labels)
    prepared = time.perf_counter() - started
    print(f"Data: {args.data}: {len(y_train)} train / {len(y_test)} test images, "
          f"{len(classes)} classes ({', '.join(classes)})")
    print(f"Loading: {decoded:.1f} s to decode the JPEGs with Pillow, "
          f"{prepared - decoded:.2f} s to standardise")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seed {args.seed}, "
          f"batch {args.batch_size}, Adam lr {args.lr:g}, {args.epochs} epochs")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = build_model(len(classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()

    total = 0.0
    for epoch in range(1, args.epochs + 1):
        tick = time.perf_counter()
        loss, train_acc = train_epoch(model, optimizer, loss_fn, x_train, y_train,
                                      args.batch_size, generator)
        seconds = time.perf_counter() - tick
        total += seconds
        print(f"Epoch: {epoch} | Training Loss: {loss:.4f} | "
              f"Training Accuracy: {100 * train_acc:.1f}% | {seconds:.2f} s", flush=True)

    correct, count = accuracy(model, x_test, y_test)
    print(f"Test Accuracy: {100 * correct / count:.1f}% ({correct}/{count})")
    print(f"Total Training Time: {total:.1f} s ({total / args.epochs:.2f} s per epoch)")


if __name__ == "__main__":
    main()
