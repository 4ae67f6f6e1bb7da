"""How Sequential runs its layers: as listed, except two exact pairs that give the same
results with fewer passes over memory.

- **A ReLU directly followed by a MaxPool2d runs as the pool, then the ReLU.**
  Max-pooling commutes with ReLU: ``max(relu(a), relu(b)) == relu(max(a, b))`` bit for
  bit, and a window whose maximum is positive has its first maximum at the same place
  in ``x`` and ``relu(x)``.  Pooling first, the ReLU and its backward touch a quarter of
  the elements (2x2 windows) and the ReLU's output before pooling is never made.  The
  output is the same bits; the gradients too, except that a window whose maximum is
  <= 0 may put a -0.0 where the listed order puts 0.0 (zero either way).
- **A Linear directly followed by a ReLU runs as one step.**  The bias add and the ReLU
  are one pass over the product (``Ops.bias_relu``), and in backward the ReLU's mask
  and the bias gradient's column sums are one pass (``Ops.relu_backward_sum0``).  The
  output and every gradient but the bias's are the same bits; the bias gradient is
  equal to rounding (the sums may run in another order than ``Ops.sum_axis0``'s).
  Each layer keeps what it keeps when run alone, so either can still run its own
  backward.

Both pairs are matched on their exact classes, so a subclass (which may change forward
or backward) runs as listed; where both could apply (Linear, ReLU, MaxPool2d) the
ReLU/pool pair wins.  Calling the layers one by one runs them as listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnx.layers.activations import ReLU
    from nnx.layers.base import Layer
    from nnx.layers.linear import Linear

#: indices of the layers one step runs: ``(i,)`` layer i alone, ``(i, i + 1)`` a fused pair
Group = tuple[int, ...]
Step = Callable[[Any], Any]
Runner = Any  # a Layer or a LinearReLU: something with ``forward(x)``


def groups(layers: list[Layer]) -> list[Group]:
    """The layers' indices, grouped into steps, in the order Sequential runs them."""
    # imported here: these modules import the one that imports this
    from nnx.layers.activations import ReLU
    from nnx.layers.linear import Linear
    from nnx.layers.pooling import MaxPool2d

    kinds = [type(layer) for layer in layers] + [None, None]
    out: list[Group] = []
    i = 0
    while i < len(layers):
        if kinds[i] is ReLU and kinds[i + 1] is MaxPool2d:
            out += [(i + 1,), (i,)]
            i += 2
        elif kinds[i] is Linear and kinds[i + 1] is ReLU and kinds[i + 2] is not MaxPool2d:
            out.append((i, i + 1))
            i += 2
        else:
            out.append((i,))
            i += 1
    return out


def plan(layers: list[Layer], start: int) -> tuple[list[Runner], list[Step]]:
    """What Sequential runs: the forward steps (each a layer or a fused pair, whose
    ``forward`` is looked up per call, as for a layer run alone), and the backward steps
    of the layers from ``start`` on (the first that needs a backward: a layer with
    parameters, so never the ReLU of a pair)."""
    forward: list[Runner] = []
    backward: list[Step] = []
    for group in groups(layers):
        if len(group) == 1:
            runner: Runner = layers[group[0]]
            # the unscoped body: Sequential's backward has entered the device scope
            back = runner._backward_body  # type: ignore[union-attr]
        else:
            runner = LinearReLU(layers[group[0]], layers[group[1]])  # type: ignore[arg-type]
            back = runner.backward
        forward.append(runner)
        if group[0] >= start:
            backward.append(back)
    return forward, backward[::-1]


class LinearReLU:
    """A Linear and the ReLU after it run as one step (see the module docstring)."""

    def __init__(self, linear: Linear, relu: ReLU) -> None:
        self.linear, self.relu = linear, relu

    def forward(self, x: Any) -> Any:
        """``relu(linear(x))``, each layer keeping what its own forward keeps."""
        linear = self.linear
        bias = None if linear.bias is None else linear.bias.value
        y = linear.ops.bias_relu(linear.product(x), bias)
        self.relu.save_for_backward(None, y)  # as ReLU.forward: no input, the output
        return y

    def backward(self, dy: Any) -> Any:
        """Both layers' backward: the ReLU's mask and the bias sums in one kernel."""
        linear = self.linear
        _, y = self.relu.saved()
        if linear.bias is None:
            return linear.gradients(linear.ops.relu_backward(dy, y), None)
        return linear.gradients(*linear.ops.relu_backward_sum0(dy, y))
