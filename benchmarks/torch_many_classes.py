"""The PyTorch reference for many classes: the report's network on 103 fruit classes, in plain PyTorch.

    python benchmarks/torch_many_classes.py [--init torch|he|he-zero|...] [--reduction sum|mean]
                                            [--seeds 0,1,2] [--data ../shared/fruits-360-103]

Everything but the framework is cnnfruit's own: the images are read and turned into tensors by
cnnfruit.data.datasets and cnnfruit.data.preprocess.to_inputs (so the preprocessing is identical), split into
train and validation by cnnfruit's seeded split (splits.generators + splits.train_val_split, through
training.loop.split_images), and shuffled each epoch by the same seeded generator in the same order. The
network is conv K x S x S + ReLU -> dense ... + ReLU -> logits, the loss cross-entropy over the
batch (summed like cnnfruit's default, or PyTorch's usual mean), the optimizer torch.optim.Adam.

--init torch keeps PyTorch's own initialisation (torch.manual_seed(seed) before the layers are
built); any other value is a cnnfruit scheme, drawn by cnnfruit.architecture.init_parameters
from the run's init generator and copied into the layers. Prints one JSON line per seed, then
the median test accuracy. Needs PyTorch (pip install torch==2.13.0, the CPU build).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

from torch_train import build_model  # noqa: E402  (beside this script)


def accuracy(torch, model, x, y, batch=256):
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            logits = model(torch.from_numpy(x[start:start + batch]))
            correct += int((logits.argmax(dim=1).numpy() == y[start:start + batch]).sum())
    return correct / len(y)


def train_one(torch, dataset, args, seed):
    from cnnfruit.nn.architecture import Architecture, init_parameters
    from cnnfruit.config import TrainConfig
    from cnnfruit.data.splits import generators
    from cnnfruit.training.loop import split_images

    config = TrainConfig(seed=seed, color=args.color, normalize=args.normalize, hidden=args.hidden,
                         kernels=args.kernels, kernel_size=args.kernel_size, batch_size=args.batch_size)
    init_rng, split_rng, shuffle_rng = generators(seed)
    data = split_images(dataset, config, split_rng)
    x_train, x_test = data.inputs(data.images_train), data.inputs(data.images_test)
    arch = Architecture.from_config(config, len(dataset.class_names))
    torch.manual_seed(seed)
    model = build_model(torch, arch, None if args.init == "torch" else init_parameters(arch, init_rng, scheme=args.init))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss(reduction=args.reduction)
    started = time.perf_counter()
    for _ in range(args.epochs):
        order = shuffle_rng.permutation(len(data.y_train))  # cnnfruit's epoch order
        x, y = x_train[order], data.y_train[order]
        for start in range(0, len(y), args.batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(torch.from_numpy(x[start:start + args.batch_size])),
                           torch.from_numpy(y[start:start + args.batch_size]))
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    return {
        "seed": seed, "init": args.init, "reduction": args.reduction, "lr": args.lr,
        "train_accuracy": accuracy(torch, model, x_train, data.y_train),
        "test_accuracy": accuracy(torch, model, x_test, data.y_test),
        "seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "fruits-360-103"))
    parser.add_argument("--init", default="torch", help="torch (PyTorch's own), or a cnnfruit scheme")
    parser.add_argument("--reduction", choices=["sum", "mean"], default="sum")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--color", choices=["grey", "rgb"], default="rgb")
    parser.add_argument("--normalize", default="standardize")
    parser.add_argument("--kernels", type=int, default=8)
    parser.add_argument("--kernel-size", type=int, default=4)
    parser.add_argument("--hidden", default="841,29", type=lambda s: tuple(int(h) for h in s.split(",")))
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()

    import torch
    from cnnfruit.data.datasets import read_image_folder

    torch.set_num_threads(args.threads)
    dataset = read_image_folder(args.data)
    print(f"# torch {torch.__version__}, {args.threads} thread(s); {os.path.basename(os.path.normpath(args.data))}: "
          f"{len(dataset.train)} train+val / {len(dataset.test)} test images, {len(dataset.class_names)} classes",
          flush=True)
    results = []
    for seed in args.seeds:
        results.append(train_one(torch, dataset, args, seed))
        print(json.dumps(results[-1]), flush=True)
    median = statistics.median(r["test_accuracy"] for r in results)
    print(f"# median test accuracy over seeds {args.seeds}: {100 * median:.1f}% "
          f"(init {args.init}, {args.reduction} loss, Adam lr {args.lr:g}, batch {args.batch_size}, {args.epochs} epochs)")


if __name__ == "__main__":
    main()
