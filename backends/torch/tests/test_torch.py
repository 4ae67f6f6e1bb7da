"""nnx-torch passes the nnx backend conformance kit (CPU, and CUDA when torch sees one)."""

import pytest

import nnx
from nnx.testing import assert_conformant

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("spec", ["torch:cpu", "torch:cuda"])
def test_torch_backend_is_conformant(spec):
    if spec == "torch:cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    assert_conformant(spec)


def test_specs_and_reasons():
    assert nnx.get_backend("torch").spec == "torch:cpu"
    if not torch.cuda.is_available():
        with pytest.raises(nnx.BackendError, match="sees no CUDA device"):
            nnx.get_backend("torch:cuda:0")
    with pytest.raises(nnx.BackendError, match="supports 'cpu' and 'cuda"):
        nnx.get_backend("torch:mps")


def test_the_fast_path_of_the_guide_matches_the_portable_code(monkeypatch):
    """docs/adding-a-backend.md shows these two kernels as an Ops subclass."""
    from nnx_torch import TorchBackend

    from nnx.backend import Ops, registry

    F = torch.nn.functional

    class UnfoldOps(Ops):
        def im2col(self, x, kernel, stride, padding, batch_last=True):
            cols = F.unfold(x, kernel, padding=padding, stride=stride)  # (N, C*kh*kw, OH*OW)
            order = (1, 2, 0) if batch_last else (1, 0, 2)  # pixels (OH, OW, N) or (N, OH, OW)
            return cols.permute(*order).reshape(cols.shape[1], -1)

        def col2im(self, cols, shape, kernel, stride, padding, batch_last=True):
            k, n = cols.shape[0], shape[0]
            if batch_last:
                d = cols.reshape(k, -1, n).permute(2, 0, 1)  # (N, C*kh*kw, OH*OW)
            else:
                d = cols.reshape(k, n, -1).permute(1, 0, 2)
            return F.fold(d, shape[2:], kernel, padding=padding, stride=stride)

    class FastTorch(TorchBackend):
        name = "torch_unfold"
        ops_class = UnfoldOps

    for attr in ("_factories", "_sources", "_instances"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    nnx.register_backend("torch_unfold", FastTorch)
    assert_conformant("torch_unfold:cpu", only=["ops", "gradcheck:Conv2d", "device"])
