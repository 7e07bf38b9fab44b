"""The layer units a network is a list of: one file per kind, each with its shapes, parameters,
FLOPs, initialisation, ONNX nodes, forward and backward (base.py says what every unit has).

    conv.py     conv K x S x S, stride 1, valid or same padding, + bias, ReLU
    pool.py     max-pool P x P, stride P
    dense.py    x @ w + b, ReLU on hidden layers
    dropout.py  inverted dropout after hidden dense layers, in training

The kernels new to these units live beside them in _kernels_*.py; the ones the report's network
has always used stay in nn/kernels.py.
"""
from cnnfruit.layerspec import ConvSpec, DenseSpec, MaxPoolSpec
from cnnfruit.nn.layers.base import Layer, LayerCost
from cnnfruit.nn.layers.conv import Conv
from cnnfruit.nn.layers.dense import Dense
from cnnfruit.nn.layers.dropout import Dropout
from cnnfruit.nn.layers.pool import MaxPool

UNIT_OF_SPEC = {ConvSpec: Conv, MaxPoolSpec: MaxPool, DenseSpec: Dense}

__all__ = ["Conv", "Dense", "Dropout", "Layer", "LayerCost", "MaxPool", "UNIT_OF_SPEC"]
