"""MNIST and Fashion-MNIST: found on disk or downloaded with checksums, returned as numpy arrays.

Where the files come from, in order:

1. ``root=``, a folder the caller names (files gzipped or not; nothing else is tried);
2. the cache folder (see :func:`nnx.datasets.cache_dir`), if it holds files with the
   right SHA-256;
3. system folders: Debian's ``dataset-fashion-mnist`` package puts Fashion-MNIST in
   /usr/share/datasets/fashion-mnist;
4. a download from the mirrors into the cache folder, when ``download=True``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .fetch import _sha256, cache_dir, fetch
from .idx import read_idx

__all__ = ["DATASETS", "SPLIT_FILES", "IdxDataset", "fashion_mnist", "load_idx_dataset", "mnist"]

#: Base names (without .gz) of the image and label files of each split.
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxDataset:
    """Where an MNIST-style data set can be found and how to check its files."""

    title: str
    mirrors: tuple[str, ...]
    #: ``.gz`` file name -> accepted (SHA-256 digest, size in bytes) pairs of that file.
    checksums: Mapping[str, tuple[tuple[str, int], ...]]
    system_dirs: tuple[str, ...] = ()
    hint: str = ""
    n_classes: int = 10
    image_shape: tuple[int, ...] = (28, 28)


DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset(
        title="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        checksums={
            "train-images-idx3-ubyte.gz": (
                ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            ),
            "train-labels-idx1-ubyte.gz": (
                ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            ),
            "t10k-images-idx3-ubyte.gz": (
                ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            ),
            "t10k-labels-idx1-ubyte.gz": (
                ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
            ),
        },
    ),
    "fashion-mnist": IdxDataset(
        title="Fashion-MNIST",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        # First the upstream files, then Debian's copies (package dataset-fashion-mnist):
        # the same deflate streams, but Debian's build strips the file name from the gzip
        # header and resets its time stamp, so the .gz bytes differ. Both are accepted, so
        # the Debian files may also be copied into the cache folder.
        checksums={
            "train-images-idx3-ubyte.gz": (
                ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
                ("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7", 26421856),
            ),
            "train-labels-idx1-ubyte.gz": (
                ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
                ("0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056", 29491),
            ),
            "t10k-images-idx3-ubyte.gz": (
                ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
                ("cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa", 4422079),
            ),
            "t10k-labels-idx1-ubyte.gz": (
                ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
                ("8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", 5125),
            ),
        },
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        hint="On Debian or Ubuntu: sudo apt-get install dataset-fashion-mnist",
    ),
}


def _digests_and_sizes(entry: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Accepted digests and expected sizes from a digest, a (digest, size) pair or a list of either."""
    items = [entry] if isinstance(entry, str) or _is_pair(entry) else list(entry)
    digests = tuple(i if isinstance(i, str) else i[0] for i in items)
    sizes = tuple(i[1] for i in items if not isinstance(i, str))
    return digests, sizes


def _is_pair(entry: Any) -> bool:
    return (
        isinstance(entry, tuple | list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], int)
    )


def _find(folder: Path, base: str) -> Path | None:
    """The file base or base.gz in folder, whichever exists (uncompressed first)."""
    for candidate in (folder / base, folder / (base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _load_pair(
    info: IdxDataset, split: str, images_path: Path, labels_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an image file and a label file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    shape = "x".join(map(str, info.image_shape))
    if images.dtype != np.uint8 or images.shape[1:] != info.image_shape:
        raise DatasetError(
            f"{images_path}: expected {info.title} images, uint8 of shape (N, {shape}), "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            f"{labels_path}: expected labels, uint8 of shape (N,), "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{info.title} {split} split: {images_path} holds {len(images)} images but "
            f"{labels_path} holds {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= info.n_classes:
        raise DatasetError(
            f"{labels_path}: label {int(labels.max())} out of range 0..{info.n_classes - 1}"
        )
    return images, labels


def load_idx_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, Any] | None = None,
    system_dirs: Sequence[str | os.PathLike[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load (images, labels) of a DATASETS entry; mirrors/checksums/system_dirs override it.

    ``checksums`` maps a .gz file name to a digest, a (digest, size) pair, or a
    list of either; the sizes cap what a download may read.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    info = DATASETS[name]
    mirrors = list(info.mirrors if mirrors is None else mirrors)
    sums = {
        k: _digests_and_sizes(v)
        for k, v in (info.checksums if checksums is None else checksums).items()
    }
    dirs = [Path(d) for d in (info.system_dirs if system_dirs is None else system_dirs)]
    bases = SPLIT_FILES[split]
    gz_names = [b + ".gz" for b in bases]

    # 1. A folder the caller names: that folder and nothing else.
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"{root}: no such folder (root= must hold the {info.title} files)")
        found = [_find(root, b) for b in bases]
        missing = [b for b, p in zip(bases, found, strict=True) if p is None]
        if missing:
            raise DatasetError(
                f"{root}: {info.title} {split} files missing: {', '.join(missing)} "
                "(each may be gzipped, with .gz added to its name)"
            )
        return _load_pair(info, split, found[0], found[1])

    # 2. The cache folder, if it holds verified files.
    cache = cache_dir(name)
    cached = [cache / g for g in gz_names]
    if all(p.is_file() and _sha256(p) in sums.get(p.name, ((), ()))[0] for p in cached):
        return _load_pair(info, split, cached[0], cached[1])

    # 3. System folders (Debian's package).
    for d in dirs:
        found = [_find(d, b) for b in bases]
        if found[0] is not None and found[1] is not None:
            return _load_pair(info, split, found[0], found[1])

    # 4. Download.
    by_hand = (
        f"To install the files by hand, put {' and '.join(gz_names)} in {cache}{os.sep} "
        f"(from {mirrors[0] if mirrors else 'a mirror'}), or pass root= a folder that holds "
        "them (the examples' --data-dir), or set NNX_DATA to use another cache folder."
    )
    if info.hint:
        by_hand += f" {info.hint}."
    if not download:
        looked = [f"{cache}{os.sep} (needs {', '.join(gz_names)} with the right SHA-256)"]
        looked += [str(d) for d in dirs]
        raise DatasetError(
            f"{info.title} {split} split not found and download=False. Looked in:\n"
            + "".join(f"  {w}\n" for w in looked)
            + "Call with download=True to download it. "
            + by_hand
        )
    paths = []
    for g in gz_names:
        if g not in sums:
            raise ValueError(f"no SHA-256 given for {g}")
        try:
            digests, sizes = sums[g]
            paths.append(fetch(g, digests, mirrors, cache, size=sizes or None))
        except DatasetError as e:
            raise DatasetError(f"{info.title} {split} split: {e}\n{by_hand}") from e
    return _load_pair(info, split, paths[0], paths[1])


def mnist(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return MNIST (images uint8 (N, 28, 28), labels uint8 (N,)) for split 'train' or 'test'."""
    return load_idx_dataset("mnist", split, root, download)


def fashion_mnist(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return Fashion-MNIST (images uint8 (N, 28, 28), labels uint8 (N,)) for 'train' or 'test'."""
    return load_idx_dataset("fashion-mnist", split, root, download)
