"""Plain-numpy references: slow, obviously correct versions of every kernel, in any dtype."""
import numpy as np


def conv_relu_forward(x, w, b):
    """relu(valid conv(x (N, C, H, H), w (K, C, S, S)) + b) -> (N, K, P, P), by explicit windows."""
    N, C, H, _ = x.shape
    K, _, S, _ = w.shape
    P = H - S + 1
    out = np.zeros((N, K, P, P), dtype=np.result_type(x, w))
    for i in range(P):
        for j in range(P):
            window = x[:, :, i:i + S, j:j + S]  # (N, C, S, S)
            out[:, :, i, j] = np.einsum("ncpq,kcpq->nk", window, w) + b
    return np.maximum(out, 0)


def conv_backward(x, dout, kernel_size):
    """dw[k,c,p,q] = sum_{n,i,j} x[n,c,i+p,j+q] dout[n,k,i,j]; db[k] = sum dout[:, k]."""
    N, C, H, _ = x.shape
    K = dout.shape[1]
    S = kernel_size
    P = H - S + 1
    dw = np.zeros((K, C, S, S), dtype=np.result_type(x, dout))
    for p in range(S):
        for q in range(S):
            dw[:, :, p, q] = np.einsum("ncij,nkij->kc", x[:, :, p:p + P, q:q + P], dout)
    return dw, dout.sum(axis=(0, 2, 3))


def conv_backward_input(dout, w, image_size):
    """dx[n,c,i+p,j+q] = sum_{k,p,q,i,j} w[k,c,p,q] dout[n,k,i,j]: each window gets its share back."""
    N, K, P, _ = dout.shape
    _, C, S, _ = w.shape
    dx = np.zeros((N, C, image_size, image_size), dtype=np.result_type(dout, w))
    for p in range(S):
        for q in range(S):
            dx[:, :, p:p + P, q:q + P] += np.einsum("nkij,kc->ncij", dout, w[:, :, p, q])
    return dx


def preprocess(pixels, color, normalize):
    """preprocess.to_inputs in float64: RGB pixel values (N, H, W, 3) -> network inputs (N, C, H, W)."""
    luma = np.array([0.299, 0.587, 0.114])
    x = (pixels @ luma)[:, None] if color == "grey" else pixels.transpose(0, 3, 1, 2)
    if normalize == "scale":
        return x / 255.0
    if normalize == "standardize":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return (x - mean) / np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1e-6)
    return x.copy()  # not a view of pixels, which finite differences change in place


def relu_backward(dact, act):
    return np.where(act > 0, dact, 0).astype(dact.dtype)


def dense_forward(x, w, b, relu):
    out = x @ w + b
    return np.maximum(out, 0) if relu else out


def dense_backward(x, dout, w):
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def softmax_cross_entropy(logits, labels):
    """(probs, per-image losses, dlogits) with the max subtracted for stability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    losses = np.log(exp.sum(axis=1)) - shifted[np.arange(len(labels)), labels]
    dlogits = probs.copy()
    dlogits[np.arange(len(labels)), labels] -= 1
    return probs, losses, dlogits


def network_loss(params, x, labels, layers):
    """Summed cross-entropy of the whole network, forward only (for finite differences)."""
    act = conv_relu_forward(x, params["conv_w"], params["conv_b"]).reshape(len(x), -1)
    for layer in range(layers):
        act = dense_forward(act, params[f"dense{layer}_w"], params[f"dense{layer}_b"], layer < layers - 1)
    return softmax_cross_entropy(act, labels)[1].sum()


def numerical_gradient(f, array, upstream=None, eps=1e-6):
    """Centred differences of f() w.r.t. every entry of `array` (changed in place, then restored).

    With `upstream`, f returns an array and the gradient is of sum(f() * upstream), as in CS231n's
    eval_numerical_gradient_array.
    """
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for t in range(flat.size):
        gflat[t] = centred_difference(f, flat, t, eps, upstream)
    return grad


def sampled_gradient(f, array, entries, eps=1e-6):
    """numerical_gradient of a scalar f() at some entries of `array` only (flat indices)."""
    flat = array.reshape(-1)
    return np.array([centred_difference(f, flat, t, eps) for t in entries])


def centred_difference(f, flat, t, eps, upstream=None):
    """(f(+eps) - f(-eps)) / 2 eps at entry t of the flat view of an array, which is restored."""
    saved = flat[t]
    flat[t] = saved + eps
    plus = f()
    flat[t] = saved - eps
    minus = f()
    flat[t] = saved
    if upstream is not None:
        plus, minus = (plus * upstream).sum(), (minus * upstream).sum()
    return (plus - minus) / (2 * eps)


def dense_backward_sgd(x, dout, w, b, lr):
    """The fused kernel's results by the unfused math: (ReLU-masked dx, updated w, updated b)."""
    dx, dw, db = dense_backward(x, dout, w)
    return relu_backward(dx, x), w - lr * dw, b - lr * db


def sgd_update(param, grad, lr, weight_decay=0.0):
    return param - lr * (grad + weight_decay * param)


def momentum_update(param, velocity, grad, lr, momentum, weight_decay):
    """(new param, new velocity) of heavy-ball momentum in PyTorch's form."""
    velocity = momentum * velocity + grad + weight_decay * param
    return param - lr * velocity, velocity


def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, step):
    """(new param, new m, new v) after Adam's update number `step` (1 for the first)."""
    g = grad + weight_decay * param
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def dense_backward_masked(x, dout, w):
    """(dx masked by the ReLU that made x, dw, db): what the tiled backward computes."""
    dx, dw, db = dense_backward(x, dout, w)
    return relu_backward(dx, x), dw, db


def weighted_softmax_cross_entropy(logits, labels, weights, smoothing):
    """(probs, per-image losses, dlogits) of the class-weighted cross-entropy with label smoothing.

    Written from the definitions: targets q = (1 - smoothing) * onehot + smoothing / M, loss
    w[label] * -sum(q * log_softmax(logits)), gradient w[label] * (softmax - q).
    """
    N, M = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    targets = np.full((N, M), smoothing / M) + (1 - smoothing) * np.eye(M)[labels]
    w = np.asarray(weights)[labels][:, None]
    losses = (w * -(targets * log_probs)).sum(axis=1)
    probs = np.exp(log_probs)
    return probs, losses, w * (probs - targets)


def dropout_forward(act, draws, rate):
    """Inverted dropout: units with draws below rate are zeroed, the others divided by 1 - rate."""
    return np.where(draws >= rate, act / (1 - rate), 0).astype(act.dtype)


def network_loss_trained(params, x, labels, layers, draws=(), rate=0.0, weights=None, smoothing=0.0):
    """network_loss with training's options: dropout with the given draws (one array per hidden
    layer), class weights and label smoothing. The summed weighted loss, forward only."""
    act = conv_relu_forward(x, params["conv_w"], params["conv_b"]).reshape(len(x), -1)
    for layer in range(layers):
        act = dense_forward(act, params[f"dense{layer}_w"], params[f"dense{layer}_b"], layer < layers - 1)
        if layer < layers - 1 and rate:
            act = dropout_forward(act, draws[layer], rate)
    weights = np.ones(act.shape[1]) if weights is None else weights
    return weighted_softmax_cross_entropy(act, labels, weights, smoothing)[1].sum()


# ---- the layer units of any network (nn/layers/)


def pads(size, padding):
    """(before, after) zeros each side of the map: none for valid, S - 1 split low-first for same."""
    if padding == "valid":
        return 0, 0
    return (size - 1) // 2, size - 1 - (size - 1) // 2


def conv_forward(x, w, b, padding="valid"):
    """relu(conv(x, w) + b) with the map padded by zeros as `padding` says."""
    before, after = pads(w.shape[2], padding)
    return conv_relu_forward(np.pad(x, ((0, 0), (0, 0), (before, after), (before, after))), w, b)


def maxpool_forward(x, P):
    """The maximum of each P x P window, stride P: (N, C, H, W) -> (N, C, H / P, W / P)."""
    N, C, H, W = x.shape
    return x.reshape(N, C, H // P, P, W // P, P).max(axis=(3, 5))


def maxpool_backward(x, dout, P):
    """Each window's gradient to the first place (row-major) that holds its maximum, 0 elsewhere."""
    N, C, H, W = x.shape
    dx = np.zeros_like(x, dtype=np.result_type(x, dout))
    for n in range(N):
        for c in range(C):
            for i in range(H // P):
                for j in range(W // P):
                    window = x[n, c, i * P:(i + 1) * P, j * P:(j + 1) * P]
                    p, q = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * P + p, j * P + q] = dout[n, c, i, j]
    return dx


def network_logits(arch, params, x):
    """The logits of any architecture, layer by layer with the references above."""
    act = x
    for unit in arch.units():
        if unit.kind == "conv":
            act = conv_forward(act, params[f"{unit.name}_w"], params[f"{unit.name}_b"], unit.padding)
        elif unit.kind == "maxpool":
            act = maxpool_forward(act, unit.size)
        else:
            act = dense_forward(act.reshape(len(x), -1), params[f"{unit.name}_w"], params[f"{unit.name}_b"],
                                not unit.logits)
    return act


def stack_loss(arch, params, x, labels):
    """Summed cross-entropy of any architecture, forward only (for finite differences)."""
    return softmax_cross_entropy(network_logits(arch, params, x), labels)[1].sum()
