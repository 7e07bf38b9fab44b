"""Optimizers: update rules applied to every parameter after each step.

Each optimizer keeps its state as named arrays (`state`), so a checkpoint can save and restore it.
"""
import numpy as np

from . import kernels


class SGD:
    name = "sgd"

    def __init__(self, params, lr):
        self.lr = lr
        self.state = {}

    def step(self, params, grads):
        for name, param in params.items():
            kernels.sgd_update(param.reshape(-1), grads[name].reshape(-1), param.dtype.type(self.lr))


OPTIMIZERS = {"sgd": SGD}


def make_optimizer(name, params, **settings):
    return OPTIMIZERS[name](params, **settings)
