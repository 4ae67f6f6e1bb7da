"""Layers: the Layer/Parameter contract, Sequential and the building blocks."""

from nnx.layers.activations import GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from nnx.layers.base import Layer, Parameter, Sequential
from nnx.layers.linear import Linear

__all__ = [
    "GELU",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Linear",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
