"""The loss: softmax and cross-entropy, plain or with class weights and label smoothing.

Serial: they touch N * M numbers, far too few to share out.
"""
import numpy as np

from cnnfruit.nn.kernels.jit import njit_serial

# Softmax probabilities below this are flushed to 0. On raw pixels the softmax saturates: exp(-90)
# is a float32 subnormal, and subnormals flowing back through the dense layers made late epochs of
# the report's recipe about 2x slower, since x86 handles them in microcode (docs/performance.md,
# "Subnormals"). A gradient of 1e-30 moves no float32 weight at any sane learning rate, and an
# exact 0 lets the fused backward skip the image altogether.
PROBABILITY_FLOOR = 1e-30


@njit_serial
def softmax_row(probs, logits):
    """probs (M,) = the softmax of logits (M,), probabilities below PROBABILITY_FLOOR set to 0;
    returns (peak, total): the row's largest logit and sum_m exp(logits[m] - peak), for the loss."""
    zero = np.zeros(1, probs.dtype)[0]
    peak = logits[0]
    for m in range(1, logits.shape[0]):
        peak = max(peak, logits[m])
    total = zero
    for m in range(logits.shape[0]):
        probs[m] = np.exp(logits[m] - peak)
        total += probs[m]
    for m in range(logits.shape[0]):
        probs[m] /= total
        if probs[m] < PROBABILITY_FLOOR:
            probs[m] = zero
    return peak, total


@njit_serial
def softmax_cross_entropy(probs, dlogits, losses, logits, labels):
    """Per-image loss, softmax probabilities and the gradient softmax - onehot; all (N, M) / (N,).

    Subtracts the row maximum first, so raw-pixel logits in the hundreds do not overflow, and
    takes the loss as logsumexp - logit[label], which never evaluates log(0). Probabilities below
    PROBABILITY_FLOOR are set to exactly 0 (see there).
    """
    N, M = logits.shape
    for n in range(N):
        peak, total = softmax_row(probs[n], logits[n])
        for m in range(M):
            dlogits[n, m] = probs[n, m]
        dlogits[n, labels[n]] -= 1
        losses[n] = np.log(total) - (logits[n, labels[n]] - peak)


@njit_serial
def weighted_softmax_cross_entropy(probs, dlogits, losses, logits, labels, weights, on_target, off_target):
    """softmax_cross_entropy with a weight per class and a smoothed target; (N, M), (N,), weights (M,).

    Image n's target is q[m] = on_target for m = labels[n] and off_target elsewhere (with label
    smoothing E: on_target = 1 - E + E / M, off_target = E / M; without: 1 and 0). With w =
    weights[labels[n]], its loss is w * -sum_m q[m] log probs[n, m] = w * (log(sum_m exp(logits[n,
    m] - peak)) - sum_m q[m] (logits[n, m] - peak)), which uses sum_m q[m] = 1 and never takes
    log(0), and its logit gradient dlogits[n] = w * (probs[n] - q). Probabilities below
    PROBABILITY_FLOOR are set to 0, as in softmax_cross_entropy.
    """
    N, M = logits.shape
    zero = np.zeros(1, probs.dtype)[0]
    for n in range(N):
        peak, total = softmax_row(probs[n], logits[n])
        label = labels[n]
        weight = weights[label]
        expected = zero  # sum_m q[m] * (logits[n, m] - peak)
        for m in range(M):
            target = on_target if m == label else off_target
            dlogits[n, m] = weight * (probs[n, m] - target)
            expected += target * (logits[n, m] - peak)
        losses[n] = weight * (np.log(total) - expected)
