"""Optimizers: update rules applied to every parameter after each step.

Each optimizer keeps its state as named arrays in `state` ("<param>.velocity", "<param>.m",
"<param>.v", "step"), so a checkpoint can save them and `load_state` can put them back on resume.
The update arithmetic itself is in kernels/updates.py; here are only the settings,
which TrainConfig (config.py) declares and checks.

Weight decay is L2 regularisation added to the gradient (grad + weight_decay * param) for every
optimizer, as torch.optim does; it applies to biases too.
"""
import inspect

import numpy as np

from cnnfruit.nn import dispatch
from cnnfruit.nn import kernels
from cnnfruit.errors import CnnfruitError
from cnnfruit.nn.tiled import TileUpdate


class Optimizer:
    name = ""
    slots = ()  # the state each parameter gets: "<param>.<slot>", shaped like the parameter
    counts_steps = False  # whether state["step"] (0-d int64) counts the updates
    # True only where the update is param -= lr * grad and nothing else, so a training step may
    # fuse it into the backward pass instead of calling step().
    fusable = False

    def __init__(self, params, lr, weight_decay=0.0):
        self.lr = lr
        self.weight_decay = weight_decay
        self.state = {}

    def _buffer(self, params, name, suffix):
        self.state[f"{name}.{suffix}"] = np.zeros_like(params[name])
        return self.state[f"{name}.{suffix}"].reshape(-1)

    def step(self, params, grads):
        """One update of every parameter from its gradient."""
        self.begin_step()
        for name, param in params.items():
            self.update(name, param, grads[name])

    def begin_step(self):
        """Called once per training step, before that step's updates (Adam counts steps here)."""

    def update(self, name, param, grad):
        """This step's update of the parameter `name` from its whole gradient."""
        raise NotImplementedError

    def tile_update(self, name, param):
        """A tiled.TileUpdate: this step's update of rows of the weight matrix `name` (I, O).

        For the tiled backward (tiled.DenseBackward), which hands it each row tile's gradient
        while that tile is still in cache; call begin_step first, as for update.
        """
        raise NotImplementedError

    def load_state(self, state):
        """Copy saved state arrays (from Checkpoint.optimizer_state) into this optimizer's own."""
        if set(state) != set(self.state):
            missing = sorted(set(self.state) - set(state))
            extra = sorted(set(state) - set(self.state))
            raise CnnfruitError(
                f"the saved {self.name} optimizer state does not fit: missing {missing or 'nothing'}, "
                f"unexpected {extra or 'nothing'}; resume with the optimizer the run was started with"
            )
        for name, saved in state.items():
            own = self.state[name]
            if saved.shape != own.shape:
                raise CnnfruitError(f"saved optimizer state {name} has shape {saved.shape}, expected {own.shape}")
            own[...] = saved


class SGD(Optimizer):
    """param -= lr * (grad + weight_decay * param)."""

    name = "sgd"

    def __init__(self, params, lr, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.fusable = weight_decay == 0

    def update(self, name, param, grad):
        lr = param.dtype.type(self.lr)
        if self.weight_decay:
            dispatch.sgd_decay_update(param.reshape(-1), grad.reshape(-1), lr, param.dtype.type(self.weight_decay))
        else:
            dispatch.sgd_update(param.reshape(-1), grad.reshape(-1), lr)

    def tile_update(self, name, param):
        return _SGDTiles(param, self.lr, self.weight_decay)


class Momentum(Optimizer):
    """velocity = momentum * velocity + grad; param -= lr * velocity (PyTorch's form)."""

    name = "momentum"
    slots = ("velocity",)

    def __init__(self, params, lr, weight_decay=0.0, momentum=0.9):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum
        self._velocity = {name: self._buffer(params, name, "velocity") for name in params}

    def update(self, name, param, grad):
        f = param.dtype.type
        dispatch.momentum_update(param.reshape(-1), self._velocity[name], grad.reshape(-1),
                                 f(self.lr), f(self.momentum), f(self.weight_decay))

    def tile_update(self, name, param):
        return _MomentumTiles(param, self._velocity[name], self.lr, self.momentum, self.weight_decay)


class Adam(Optimizer):
    """Adam with bias-corrected moments; `state["step"]` counts the updates made so far."""

    name = "adam"
    slots = ("m", "v")
    counts_steps = True

    def __init__(self, params, lr, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self._m = {name: self._buffer(params, name, "m") for name in params}
        self._v = {name: self._buffer(params, name, "v") for name in params}
        self.state["step"] = np.zeros((), dtype=np.int64)

    def begin_step(self):
        self.state["step"] += 1
        t = int(self.state["step"])
        # The bias corrections are computed in float64 once per step, then cast with the rest.
        self._corrections = (1 - self.beta1**t, 1 - self.beta2**t)

    def _settings(self, dtype):
        f = dtype.type
        return (f(self.lr), f(self.beta1), f(self.beta2), f(self.eps), f(self.weight_decay),
                *(f(c) for c in self._corrections))

    def update(self, name, param, grad):
        dispatch.adam_update(param.reshape(-1), self._m[name], self._v[name], grad.reshape(-1),
                             *self._settings(param.dtype))

    def tile_update(self, name, param):
        return _AdamTiles(param, self._m[name], self._v[name], self._settings(param.dtype))


# ---- the same updates on row tiles of a weight matrix (I, O), for tiled.DenseBackward


class _RowTiles(TileUpdate):
    def __init__(self, param):
        self.param = param
        self.width = param.shape[1]

    def flat(self, array, r0, r1):
        """Rows r0:r1 of the (I, O) parameter as a slice of a flat (I * O,) state array."""
        return array[r0 * self.width:r1 * self.width]


class _SGDTiles(_RowTiles):
    def __init__(self, param, lr, weight_decay):
        super().__init__(param)
        f = param.dtype.type
        self.lr, self.weight_decay = f(lr), f(weight_decay)
        self.sparse = weight_decay == 0  # a zero gradient then leaves the weights as they are

    def rows(self, r0, r1, g):
        kernels.sgd_tile(self.param[r0:r1].reshape(-1), g.reshape(-1), self.lr, self.weight_decay)

    def gathered(self, rows, cols, ncols, g):
        kernels.sgd_gathered_tile(self.param, g, rows, cols, ncols, self.lr)


class _MomentumTiles(_RowTiles):
    def __init__(self, param, velocity, lr, momentum, weight_decay):
        super().__init__(param)
        f = param.dtype.type
        self.velocity, self.settings = velocity, (f(lr), f(momentum), f(weight_decay))

    def rows(self, r0, r1, g):
        kernels.momentum_tile(self.param[r0:r1].reshape(-1), self.flat(self.velocity, r0, r1), g.reshape(-1),
                              *self.settings)


class _AdamTiles(_RowTiles):
    def __init__(self, param, m, v, settings):
        super().__init__(param)
        self.m, self.v, self.settings = m, v, settings

    def rows(self, r0, r1, g):
        kernels.adam_tile(self.param[r0:r1].reshape(-1), self.flat(self.m, r0, r1), self.flat(self.v, r0, r1),
                          g.reshape(-1), *self.settings)


UPDATE_RULES = {rule.name: rule for rule in (SGD, Momentum, Adam)}  # keys: config.OPTIMIZERS


def state_shapes(name, param_shapes):
    """The state arrays the optimizer `name` keeps for parameters of these shapes: name -> shape.

    What a checkpoint's optimizer state is checked against, without making the optimizer.
    """
    cls = UPDATE_RULES[name]
    shapes = {f"{param}.{slot}": tuple(shape) for param, shape in param_shapes.items() for slot in cls.slots}
    if cls.counts_steps:
        shapes["step"] = ()
    return shapes


def make_optimizer(name, params, **settings):
    """The optimizer `name` over `params`; settings it does not use (say, betas for sgd) are ignored.

    The settings are TrainConfig's, already checked there.
    """
    cls = UPDATE_RULES[name]
    accepted = inspect.signature(cls).parameters
    return cls(params, **{key: value for key, value in settings.items() if key in accepted})
