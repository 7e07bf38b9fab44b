"""The network at work: forward and backward passes through the kernels, on preallocated buffers.

See architecture.py for the layers and the shape letters of kernels/__init__.py for the dimensions.
"""
import numpy as np

from cnnfruit.nn import dispatch
from cnnfruit.errors import CnnfruitError


class Network:
    """Parameters, their gradients and the activations of one batch size, all preallocated.

    `forward` fills the activations; `backward` (after `loss`) fills `grads`. Buffers are made
    once per batch size and reused, so a training step allocates nothing.
    """

    def __init__(self, arch, params):
        self.arch = arch
        self.params = params
        self.dtype = params["conv_w"].dtype
        self._check_parameters()
        self.grads = {name: np.zeros_like(p) for name, p in params.items()}
        self._batch = None
        self._capacity = 0
        self.dropout = 0.0  # the rate of forward(x, dropout_rng), on the hidden layers' outputs
        self._dropout_scale = None  # 1 / (1 - rate) while the last forward pass dropped units
        self._draws = {}  # per hidden layer, dropout's uniform draws (float64, whatever the dtype)

    def _check_parameters(self):
        """The kernels index the weights by the architecture's shapes and one float type: refuse any other."""
        shapes = self.arch.parameter_shapes()
        fits = set(self.params) == set(shapes) and self.dtype in (np.float32, np.float64) and all(
            isinstance(p, np.ndarray) and p.shape == shapes[name] and p.dtype == self.dtype and p.flags.c_contiguous
            for name, p in self.params.items())
        if not fits:
            given = {name: (getattr(p, "shape", None), str(getattr(p, "dtype", type(p).__name__)))
                     for name, p in self.params.items()}
            raise CnnfruitError(f"the network's parameters do not fit its architecture: it needs {shapes} in one of "
                                f"float32 or float64, C-ordered; got {given}")

    def _check_input(self, x):
        """A batch (N, C, H, H) of this network's inputs, as the kernels index it."""
        arch = self.arch
        if x.ndim != 4 or x.shape[1:] != (arch.in_channels, arch.image_size, arch.image_size):
            raise CnnfruitError(f"the network takes inputs (N, {arch.in_channels}, {arch.image_size}, "
                                f"{arch.image_size}), got {x.shape}")

    @property
    def layers(self):
        return len(self.arch.dense_widths)

    def _workspace(self, batch):
        """Point the activation buffers at views of `batch` rows, growing them only when needed."""
        if self._batch == batch:
            return
        if batch > self._capacity:
            self._allocate(batch)
        self.conv_out = self._conv_out[:batch]
        self.dconv = self._dconv[:batch]
        self.acts = [a[:batch] for a in self._acts]
        self.dacts = [d[:batch] for d in self._dacts]
        self.dpres = [d[:batch] for d in self._dpres]
        self.probs = self._probs[:batch]
        self.losses = self._losses[:batch]
        self._batch = batch

    def _allocate(self, capacity):
        arch, dtype = self.arch, self.dtype
        P = arch.conv_side
        self._conv_out = np.zeros((capacity, arch.kernels, P, P), dtype)
        self._dconv = np.zeros_like(self._conv_out)
        # acts[0] is the flattened conv output; acts[l + 1] the output of dense layer l;
        # dpres[l] is the gradient before the ReLU that produced acts[l].
        self._acts = [self._conv_out.reshape(capacity, arch.features)]
        self._dacts = [np.zeros((capacity, arch.features), dtype)]
        self._dpres = [self._dconv.reshape(capacity, arch.features)]
        for _, fan_out in arch.dense_widths:
            self._acts.append(np.zeros((capacity, fan_out), dtype))
            self._dacts.append(np.zeros((capacity, fan_out), dtype))
            self._dpres.append(np.zeros((capacity, fan_out), dtype))
        self._forward_scratch = [dispatch.dense_forward_scratch(capacity, fan_out, dtype)
                                 for _, fan_out in arch.dense_widths]
        self._step_buffers = [dispatch.DenseStepBuffers(fan_in, fan_out, capacity, dtype)
                              for fan_in, fan_out in arch.dense_widths]
        self._probs = np.zeros((capacity, arch.classes), dtype)
        self._losses = np.zeros(capacity, dtype)
        self._capacity = capacity
        self._batch = None

    def forward(self, x, dropout_rng=None):
        """x (N, C, H, H) -> logits (N, M), a view into the workspace.

        With dropout_rng (a numpy Generator; training only) and a dropout rate above 0, each hidden
        layer's output goes through inverted dropout, its draws taken from dropout_rng layer after
        layer, each an (N, O) array of rng.random in row order.
        """
        x = np.ascontiguousarray(x, dtype=self.dtype)
        self._check_input(x)
        self._workspace(x.shape[0])
        self.x = x
        p = self.params
        dropping = dropout_rng is not None and self.dropout > 0
        self._dropout_scale = self.dtype.type(1 / (1 - self.dropout)) if dropping else None
        dispatch.conv_relu_forward(self.conv_out, x, p["conv_w"], p["conv_b"])
        for layer in range(self.layers):
            hidden = layer < self.layers - 1
            dispatch.dense_forward(self.acts[layer + 1], self.acts[layer], p[f"dense{layer}_w"], p[f"dense{layer}_b"],
                                   hidden, self._forward_scratch[layer])
            if dropping and hidden:
                draws = self._dropout_draws(layer, len(x))
                dropout_rng.random(out=draws)
                dispatch.dropout_forward(self.acts[layer + 1], draws, self.dropout)
        return self.acts[-1]

    def _dropout_draws(self, layer, batch):
        draws = self._draws.get(layer)
        if draws is None or len(draws) < batch:
            draws = self._draws[layer] = np.empty((max(batch, self._capacity), self.arch.dense_widths[layer][1]))
        return draws[:batch]

    def _dropout_backward(self, layer):
        """dpres[layer] (already ReLU-masked by the dropped output) times dropout's 1 / (1 - rate)."""
        if self._dropout_scale is not None and layer > 0:
            self.dpres[layer] *= self._dropout_scale

    def feature_maps(self, x):
        """The conv layer's ReLU maps (N, K, P, P) of inputs x, in a new array."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        self._check_input(x)
        P = self.arch.conv_side
        maps = np.empty((len(x), self.arch.kernels, P, P), self.dtype)
        dispatch.conv_relu_forward(maps, x, self.params["conv_w"], self.params["conv_b"])
        return maps

    def loss(self, labels, class_weights=None, smoothing=0.0):
        """Per-image cross-entropy (N,) of the last forward pass; also sets the logit gradient.

        class_weights (M,) of the network's dtype weight each image's loss by its class, and
        smoothing spreads that share of each target over all classes (training only).
        """
        M = self.arch.classes
        if labels.dtype != np.int64 or labels.shape != (self._batch,) or \
                (len(labels) and not 0 <= labels.min() <= labels.max() < M):  # the kernel indexes probs by them
            raise CnnfruitError(f"labels must be {self._batch} class indices from 0 to {M - 1} (int64), got "
                                f"{labels.dtype} {labels.shape}")
        if class_weights is None and not smoothing:
            dispatch.softmax_cross_entropy(self.probs, self.dpres[-1], self.losses, self.acts[-1], labels)
        else:
            if class_weights is None:
                class_weights = np.ones(M, self.dtype)
            if class_weights.shape != (M,) or class_weights.dtype != self.dtype:  # the kernel indexes it by label
                raise CnnfruitError(f"class weights must be {M} numbers of the network's {self.dtype}, got "
                                    f"{class_weights.dtype} {class_weights.shape}")
            dispatch.weighted_softmax_cross_entropy(self.probs, self.dpres[-1], self.losses, self.acts[-1], labels,
                                                    class_weights, smoothing)
        return self.losses

    def backward(self):
        """Gradients of the SUM of the per-image losses into self.grads."""
        g, p = self.grads, self.params
        for layer in reversed(range(self.layers)):
            dispatch.dense_backward(self.dacts[layer], g[f"dense{layer}_w"], g[f"dense{layer}_b"], self.acts[layer],
                                    self.dpres[layer + 1], p[f"dense{layer}_w"])
            dispatch.relu_backward(self.dpres[layer], self.dacts[layer], self.acts[layer])
            self._dropout_backward(layer)
        dispatch.conv_backward(g["conv_w"], g["conv_b"], self.x, self.dconv)
        return g

    def input_gradient(self, dlogits):
        """Gradient (N, C, H, H) with respect to the input x of the last forward pass, given the
        gradient dlogits (N, M) of some score of the logits; also overwrites self.grads."""
        self.dpres[-1][...] = dlogits
        self.backward()
        dx = np.empty_like(self.x)
        dispatch.conv_backward_input(dx, self.dconv, self.params["conv_w"])
        return dx

    def backward_step(self, optimizer):
        """Backward pass fused with one optimizer step: every parameter updated from its gradient.

        Gives what backward() then optimizer.step() would, up to rounding; dispatch chooses how
        each dense layer runs (dispatch.dense_backward_path). self.grads keeps the gradients the
        unfused paths computed.
        """
        p, g = self.params, self.grads
        optimizer.begin_step()
        for layer in reversed(range(self.layers)):
            w_name, b_name = f"dense{layer}_w", f"dense{layer}_b"
            dispatch.dense_backward_step(self.dpres[layer], self.dacts[layer], g[w_name], g[b_name], p[w_name], p[b_name],
                                         self.acts[layer], self.dpres[layer + 1], optimizer, w_name, b_name,
                                         self._step_buffers[layer])
            self._dropout_backward(layer)
        dispatch.conv_backward(g["conv_w"], g["conv_b"], self.x, self.dconv)
        for name in ("conv_w", "conv_b"):
            optimizer.update(name, p[name], g[name])

    def _scored_batches(self, x, labels, batch, inputs=None):
        """Forward pass and loss over x; yields (slice of x, its probabilities, its losses).

        inputs, if given, turns each batch of x into network inputs first (say, uint8 images
        through their preprocessing), so a large set is never converted all at once. The network
        itself runs on blocks of exactly dispatch.INFERENCE_ROWS images, the last one padded with
        zeros: a BLAS library picks its kernel, and with it the rounding of every row, by the
        product's shape, so blocks of one shape give an image the same probabilities whatever
        batch it comes in and whatever images share it.
        """
        rows = dispatch.INFERENCE_ROWS
        padded, padded_labels = None, np.zeros(rows, np.int64)
        for start in range(0, len(x), batch):
            chunk = slice(start, min(start + batch, len(x)))
            inputs_ = x[chunk] if inputs is None else inputs(x[chunk])
            probs = np.empty((len(inputs_), self.arch.classes), self.dtype)
            losses = np.empty(len(inputs_), self.dtype)
            for lo in range(0, len(inputs_), rows):
                n = min(rows, len(inputs_) - lo)
                if padded is None:
                    padded = np.zeros((rows, *inputs_.shape[1:]), self.dtype)
                padded[:n] = inputs_[lo:lo + n]
                padded[n:] = 0
                padded_labels[:n] = labels[chunk][lo:lo + n]
                self.forward(padded)
                self.loss(padded_labels)
                probs[lo:lo + n] = self.probs[:n]
                losses[lo:lo + n] = self.losses[:n]
            yield chunk, probs, losses

    def predict_proba(self, x, batch=256, inputs=None):
        """Softmax probabilities (N, M) for inputs x (or for inputs(x), batch by batch)."""
        out = np.empty((len(x), self.arch.classes), dtype=self.dtype)
        unknown = np.zeros(len(x), dtype=np.int64)  # the softmax needs a label; its loss is unused
        for chunk, probs, _ in self._scored_batches(x, unknown, batch, inputs):
            out[chunk] = probs
        return out

    def evaluate(self, x, labels, batch=256, inputs=None, probabilities=None):
        """(mean per-image loss, accuracy, predictions) over a whole set; x or inputs(x) as in
        predict_proba. probabilities, an (N, M) array if given, receives the softmax of each image."""
        losses = np.empty(len(x), dtype=np.float64)
        predictions = np.empty(len(x), dtype=np.int64)
        for chunk, probs, batch_losses in self._scored_batches(x, labels, batch, inputs):
            losses[chunk] = batch_losses
            predictions[chunk] = probs.argmax(axis=1)
            if probabilities is not None:
                probabilities[chunk] = probs
        return float(losses.mean()), float((predictions == labels).mean()), predictions
