"""Layers: the Layer/Parameter contract, Sequential and the building blocks."""

from nnx.layers.activations import GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from nnx.layers.base import Layer, Parameter, Sequential
from nnx.layers.conv import Conv2d
from nnx.layers.dropout import Dropout
from nnx.layers.linear import Linear
from nnx.layers.normalization import BatchNorm1d, BatchNorm2d
from nnx.layers.pooling import AvgPool2d, MaxPool2d
from nnx.layers.reshape import Flatten

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GELU",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
