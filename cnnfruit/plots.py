"""Figures, built with matplotlib's Agg backend and saved to files; nothing opens a window."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .files import write_atomically  # noqa: E402


def _save(fig, path):
    write_atomically(path, lambda temporary: fig.savefig(temporary, dpi=120, format="png"))
    plt.close(fig)


def plot_history(history, path):
    """The report's figure: training and validation loss per epoch, and accuracy beside it."""
    epochs = [e["epoch"] for e in history["epochs"]]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [e["train_loss"] for e in history["epochs"]], "o-", label="Training")
    acc_ax.plot(epochs, [100 * e["train_accuracy"] for e in history["epochs"]], "o-", label="Training")
    if all(e.get("val_loss") is not None for e in history["epochs"]):
        loss_ax.plot(epochs, [e["val_loss"] for e in history["epochs"]], "s-", label="Validation")
        acc_ax.plot(epochs, [100 * e["val_accuracy"] for e in history["epochs"]], "s-", label="Validation")
    if history.get("test_accuracy") is not None:
        acc_ax.axhline(100 * history["test_accuracy"], color="grey", linestyle="--",
                       label=f"Test ({100 * history['test_accuracy']:.1f}%)")
    loss_ax.set(xlabel="Epoch", ylabel="Loss (mean cross-entropy per image)", title="Loss")
    acc_ax.set(xlabel="Epoch", ylabel="Accuracy (%)", title="Accuracy", ylim=(0, 100))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    hp = history.get("hyperparameters", {})
    fig.suptitle(f"{history.get('dataset', '')}: lr {hp.get('lr')}, batch {hp.get('batch_size')}, seed {history.get('seed')}")
    fig.tight_layout()
    _save(fig, path)
