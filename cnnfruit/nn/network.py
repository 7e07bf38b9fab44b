"""The network at work: its layer units run in order, forward and backward, on preallocated buffers.

See architecture.py for the layers and nn/layers/base.py for what each unit computes. The
network holds one output and one gradient array per unit, acts[i + 1] and dacts[i + 1] for unit
i (acts[0] is the input batch, dacts[0] its gradient), made once per batch size and reused, so a
training step allocates nothing. A dropout unit after each hidden dense layer works in place on
that layer's arrays.
"""
import numpy as np

from cnnfruit.errors import CnnfruitError
from cnnfruit.nn import dispatch
from cnnfruit.nn.layers import Dropout


class Network:
    """Parameters, their gradients and the activations of one batch size, all preallocated.

    `forward` fills the activations; `backward` (after `loss`) fills `grads`; `backward_step`
    updates the parameters on the way down.
    """

    def __init__(self, arch, params):
        self.arch = arch
        self.params = params
        self.layers = _with_dropout(arch.units())
        self.dtype = next(iter(params.values())).dtype if params else None
        self._check_parameters()
        self.grads = {name: np.zeros_like(p) for name, p in params.items()}
        # per unit: its parameters and gradients under their local names, and their full names
        self._names = [{local: f"{unit.name}_{local}" for local in unit.parameter_shapes()} for unit in self.layers]
        self._params = [{local: params[name] for local, name in names.items()} for names in self._names]
        self._grads = [{local: self.grads[name] for local, name in names.items()} for names in self._names]
        self._batch = None
        self._capacity = 0
        self._dropout = 0.0
        self._inference_rows = dispatch.inference_rows(arch)

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
    def dropout(self):
        """The rate of forward(x, dropout_rng), on the hidden dense layers' outputs."""
        return self._dropout

    @dropout.setter
    def dropout(self, rate):
        self._dropout = rate
        for unit in self.layers:
            if unit.kind == "dropout":
                unit.rate = rate

    # ---- the workspace

    def _workspace(self, batch):
        """Point the activation buffers at views of `batch` rows, growing them only when needed."""
        if self._batch == batch:
            return
        if batch > self._capacity:
            self._allocate(batch)
        self.acts = [None] + [a[:batch] for a in self._acts[1:]]
        self.dacts = [d[:batch] for d in self._dacts]
        self.probs = self._probs[:batch]
        self.losses = self._losses[:batch]
        self._batch = batch

    def _allocate(self, capacity):
        arch, dtype = self.arch, self.dtype
        self._acts = [None]
        self._dacts = [np.zeros((capacity, arch.in_channels, arch.image_size, arch.image_size), dtype)]
        for unit in self.layers:
            if getattr(unit, "in_place", False):
                self._acts.append(self._acts[-1])
                self._dacts.append(self._dacts[-1])
            else:
                self._acts.append(np.zeros((capacity, *unit.out_shape), dtype))
                self._dacts.append(np.zeros((capacity, *unit.out_shape), dtype))
            unit.allocate(capacity, dtype)
        self._probs = np.zeros((capacity, arch.classes), dtype)
        self._losses = np.zeros(capacity, dtype)
        self._capacity = capacity
        self._batch = None

    @property
    def logits(self):
        return self.acts[-1]

    @property
    def dlogits(self):
        """The gradient of the logits (N, M): what loss() sets and backward starts from."""
        return self.dacts[-1]

    # ---- the passes

    def forward(self, x, dropout_rng=None, until=None):
        """x (N, C, H, H) -> logits (N, M), a view into the workspace.

        With dropout_rng (a numpy Generator; training only) and a dropout rate above 0, each hidden
        dense layer's output goes through inverted dropout, its draws taken from dropout_rng layer
        after layer. until, the index of a unit, stops after that unit and returns its output.
        """
        x = np.ascontiguousarray(x, dtype=self.dtype)
        self._check_input(x)
        self._workspace(x.shape[0])
        self.x = self.acts[0] = x
        dropping = dropout_rng is not None and self._dropout > 0
        last = len(self.layers) - 1 if until is None else until
        for i, unit in enumerate(self.layers[:last + 1]):
            if unit.kind == "dropout":
                unit.generator = dropout_rng if dropping else None
            unit.forward(self.acts[i + 1], self.acts[i], self._params[i])
        return self.acts[last + 1]

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
            dispatch.softmax_cross_entropy(self.probs, self.dlogits, self.losses, self.logits, labels)
        else:
            if class_weights is None:
                class_weights = np.ones(M, self.dtype)
            if class_weights.shape != (M,) or class_weights.dtype != self.dtype:  # the kernel indexes it by label
                raise CnnfruitError(f"class weights must be {M} numbers of the network's {self.dtype}, got "
                                    f"{class_weights.dtype} {class_weights.shape}")
            dispatch.weighted_softmax_cross_entropy(self.probs, self.dlogits, self.losses, self.logits, labels,
                                                    class_weights, smoothing)
        return self.losses

    def _input_gradient_needed(self, i, everywhere):
        unit = self.layers[i]
        return everywhere or unit.needs_input_gradient or getattr(unit, "in_place", False)

    def backward(self, input_gradient=False):
        """Gradients of the SUM of the per-image losses into self.grads; with input_gradient, also
        the gradient of the input batch into dacts[0]."""
        for i in reversed(range(len(self.layers))):
            dx = self.dacts[i] if self._input_gradient_needed(i, input_gradient) else None
            self.layers[i].backward(dx, self.dacts[i + 1], self.acts[i], self.acts[i + 1], self._params[i],
                                    self._grads[i])
        return self.grads

    def input_gradient(self, dlogits):
        """Gradient (N, C, H, H) with respect to the input x of the last forward pass, given the
        gradient dlogits (N, M) of some score of the logits; also overwrites self.grads."""
        self.dlogits[...] = dlogits
        self.backward(input_gradient=True)
        return self.dacts[0].copy()

    def backward_step(self, optimizer):
        """Backward pass fused with one optimizer step: every parameter updated from its gradient.

        Gives what backward() then optimizer.step() would, up to rounding; each unit chooses how
        it runs (a dense layer: dispatch.dense_backward_path). self.grads keeps the gradients the
        unfused paths computed.
        """
        optimizer.begin_step()
        for i in reversed(range(len(self.layers))):
            dx = self.dacts[i] if self._input_gradient_needed(i, False) else None
            self.layers[i].step(dx, self.dacts[i + 1], self.acts[i], self.acts[i + 1], self._params[i],
                                self._grads[i], optimizer, self._names[i])

    # ---- what the layers see

    def conv_index(self, layer=None):
        """The unit index of a conv layer: by name (conv, conv0, ...), by position among the conv
        layers (0 for the first), or the first one."""
        convs = [i for i, unit in enumerate(self.layers) if unit.kind == "conv"]
        if not convs:
            raise CnnfruitError("the network has no conv layer")
        names = [self.layers[i].name for i in convs]
        if layer is None:
            return convs[0]
        if isinstance(layer, str):
            if layer not in names:
                raise CnnfruitError(f"the network has no conv layer {layer!r}; its conv layers: {', '.join(names)}")
            return convs[names.index(layer)]
        if not (isinstance(layer, (int, np.integer)) and not isinstance(layer, bool) and 0 <= layer < len(convs)):
            raise CnnfruitError(f"conv layer {layer!r} is not one of the network's {len(convs)} (0 to "
                                f"{len(convs) - 1}, or by name: {', '.join(names)})")
        return convs[layer]

    def feature_maps(self, x, layer=None):
        """A conv layer's ReLU maps (N, K, P, Q) of inputs x, in a new array; layer as in conv_index."""
        return self.forward(x, until=self.conv_index(layer)).copy()

    # ---- whole sets

    def _scored_batches(self, x, labels, batch, inputs=None):
        """Forward pass and loss over x; yields (slice of x, its probabilities, its losses).

        inputs, if given, turns each batch of x into network inputs first (say, uint8 images
        through their preprocessing), so a large set is never converted all at once. The network
        itself runs on blocks of exactly dispatch.inference_rows(arch) images, the last one padded with
        zeros: a BLAS library picks its kernel, and with it the rounding of every row, by the
        product's shape, so blocks of one shape give an image the same probabilities whatever
        batch it comes in and whatever images share it.
        """
        rows = self._inference_rows
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


def _with_dropout(units):
    """The units with a dropout unit after each hidden dense layer (doing nothing at rate 0)."""
    out, count = [], 0
    for unit in units:
        out.append(unit)
        if unit.kind == "dense" and not unit.logits:
            out.append(Dropout(f"dropout{count}", "dropout", unit.out_shape, number=unit.number, relu_input=True,
                               below_has_parameters=True))
            count += 1
    return out
