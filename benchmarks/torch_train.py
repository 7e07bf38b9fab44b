"""A plain PyTorch script that does what `cnnfruit train` does each epoch: train, validate, save.

    python benchmarks/torch_train.py [--epochs 10] [--batch-size 1] [--lr 1e-6] [--seed 0] [--out DIR]

The benchmark times this whole process against `cnnfruit train` with the same flags. Same data
(the embedded photos, cnnfruit's seeded train/validation cut and its epoch order), same network
(built from cnnfruit's Architecture), same starting weights (cnnfruit's initialisation for the
seed, copied in), the loss summed over the batch and plain SGD: only the framework differs. Each
epoch it prints a line, scores the validation images, and saves the model and optimizer state
with torch.save; at the end it scores the test images. Needs torch==2.13.0 (pip install .[bench]).
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing


def build_model(torch, arch, params=None):
    """Any cnnfruit Architecture as a torch Sequential, layer unit by layer unit, with cnnfruit's
    arrays copied in when given (torch keeps a Linear's weight as (out, in), cnnfruit as (in, out)).
    A same-padded conv of an even kernel pads more after than before, as cnnfruit (and ONNX's
    SAME_UPPER) does: ZeroPad2d, since Conv2d pads both sides alike."""
    nn = torch.nn
    layers = []
    for unit in arch.units():
        if unit.kind == "conv":
            before, after = unit.pads
            if before != after:
                layers.append(nn.ZeroPad2d((before, after, before, after)))
            layers += [nn.Conv2d(unit.in_shape[0], unit.kernels, unit.size, padding=before if before == after else 0),
                       nn.ReLU()]
        elif unit.kind == "maxpool":
            layers.append(nn.MaxPool2d(unit.size))
        else:
            if len(unit.in_shape) > 1:
                layers.append(nn.Flatten())
            layers.append(nn.Linear(unit.fan_in, unit.units))
            if not unit.logits:
                layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    if params is not None:
        copy_parameters(torch, arch, model, params)
    return model


def _learned(torch, arch, model):
    """(cnnfruit name, torch module) of each layer with parameters, in order."""
    units = [unit for unit in arch.units() if unit.kind in ("conv", "dense")]
    modules = [m for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return [(unit.name, module) for unit, module in zip(units, modules)]


def copy_parameters(torch, arch, model, params):
    with torch.no_grad():
        for name, module in _learned(torch, arch, model):
            weight = params[f"{name}_w"]
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T if weight.ndim == 2 else weight)))
            module.bias.copy_(torch.from_numpy(params[f"{name}_b"]))


def model_parameters(torch, arch, model, gradients=False):
    """The model's weights (or their gradients) as cnnfruit names and layouts, numpy arrays."""
    out = {}
    for name, module in _learned(torch, arch, model):
        weight, bias = (module.weight.grad, module.bias.grad) if gradients else (module.weight, module.bias)
        out[f"{name}_w"] = (weight.T if weight.ndim == 2 else weight).detach().numpy()
        out[f"{name}_b"] = bias.detach().numpy()
    return out


def score(torch, model, loss_fn, x, y, batch=256):
    """(mean loss per image, accuracy) over a whole set, without gradients."""
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            logits = model(torch.from_numpy(x[start:start + batch]))
            labels = torch.from_numpy(y[start:start + batch])
            total += float(loss_fn(logits, labels))
            correct += int((logits.argmax(dim=1) == labels).sum())
    return total / len(y), correct / len(y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="torch-run")
    args = parser.parse_args()

    import torch

    import cnnfruit
    from cnnfruit.nn.architecture import Architecture, init_parameters
    from cnnfruit.data.splits import generators
    from cnnfruit.training.loop import split_images

    config = cnnfruit.TrainConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    dataset = cnnfruit.load_embedded()
    init_rng, split_rng, shuffle_rng = generators(config.seed)
    data = split_images(dataset, config, split_rng)
    x_train, x_val, x_test = (data.inputs(images) for images in (data.images_train, data.images_val, data.images_test))
    arch = Architecture.from_config(config, len(dataset.class_names))
    model = build_model(torch, arch, init_parameters(arch, init_rng, scheme=config.init))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        order = shuffle_rng.permutation(len(data.y_train))
        x, y = x_train[order], data.y_train[order]
        total = 0.0
        for start in range(0, len(y), config.batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(torch.from_numpy(x[start:start + config.batch_size])),
                           torch.from_numpy(y[start:start + config.batch_size]))
            loss.backward()
            optimizer.step()
            total += loss.item()
        val_loss, val_accuracy = score(torch, model, loss_fn, x_val, data.y_val)
        path = os.path.join(args.out, "model.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, path + ".tmp")
        os.replace(path + ".tmp", path)
        print(f"Epoch: {epoch} | Training Loss: {total / len(y):.4f} | Validation Loss: {val_loss:.4f} | "
              f"Validation Accuracy: {100 * val_accuracy:.1f}% | {time.perf_counter() - epoch_started:.1f} s",
              flush=True)
    _, test_accuracy = score(torch, model, loss_fn, x_test, data.y_test)
    print(f"Test Accuracy: {100 * test_accuracy:.1f}%")
    print(f"Total Time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
