"""Datasets and a DataLoader with PyTorch's names: batch size, seeded shuffling, drop_last.

Array-backed datasets are batched by fancy indexing (one gather per batch), not item by item.
"""
import numpy as np

from engine.tensor import Tensor


class Dataset:
    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the i-th rows of each of the given arrays/tensors (all of one length)."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = [a.numpy() if isinstance(a, Tensor) else np.asarray(a) for a in arrays]
        n = len(self.arrays[0])
        if any(len(a) != n for a in self.arrays):
            raise ValueError(f"TensorDataset: arrays differ in length: {[len(a) for a in self.arrays]}")

    def __getitem__(self, index):
        return tuple(Tensor._wrap(a[index]) for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, generator=None):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        if generator is None:
            from engine.random import generator as global_generator

            generator = np.random.default_rng(seed) if seed is not None else global_generator()
        self.rng = generator

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            yield self._batch(idx)

    def _batch(self, idx):
        if isinstance(self.dataset, TensorDataset):
            return tuple(Tensor._wrap(np.ascontiguousarray(a[idx])) for a in self.dataset.arrays)
        items = [self.dataset[int(i)] for i in idx]
        return tuple(Tensor._wrap(np.stack([np.asarray(x[k].numpy() if isinstance(x[k], Tensor) else x[k])
                                            for x in items])) for k in range(len(items[0])))
