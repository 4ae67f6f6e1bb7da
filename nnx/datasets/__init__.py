"""Data sets for nnx: strict IDX reading, checksummed downloads, MNIST and Fashion-MNIST.

Host side only (numpy and the standard library): the arrays returned are numpy
arrays, to be copied to a device by the backend.
"""

from .errors import DatasetError
from .fetch import cache_dir, fetch
from .idx import read_idx, write_idx
from .mnist import fashion_mnist, load_idx_dataset, mnist

__all__ = [
    "DatasetError",
    "cache_dir",
    "fashion_mnist",
    "fetch",
    "load_idx_dataset",
    "mnist",
    "read_idx",
    "write_idx",
]
