"""Character-level text data for the GPT: a vocabulary of the characters seen, and random
(context, next-character) windows.

The default corpus is the Python language reference shipped inside every CPython install
(pydoc_data.topics, ~465 KB of English prose and code), so nothing is downloaded; --text PATH
trains on the user's own file.
"""
import numpy as np


def default_corpus():
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


class CharCorpus:
    """text -> integer ids; 90% train / 10% validation split at a fixed point."""

    def __init__(self, text, val_fraction=0.1):
        if len(text) < 2:
            raise ValueError("CharCorpus: the text must have at least 2 characters")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))
        split = int(len(ids) * (1 - val_fraction))
        self.train, self.val = ids[:split], ids[split:]

    @classmethod
    def from_file(cls, path, **kw):
        with open(path, encoding="utf-8") as f:
            return cls(f.read(), **kw)

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, s):
        missing = sorted({c for c in s if c not in self.stoi})
        if missing:
            raise ValueError(f"encode: characters not in the vocabulary: {missing[:10]}")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)

    def batch(self, split, batch_size, block_size, rng):
        """x, y of shape (batch_size, block_size): y is x shifted by one character."""
        data = self.train if split == "train" else self.val
        if len(data) <= block_size:
            raise ValueError(f"the {split} text ({len(data)} characters) is shorter than the context {block_size}")
        starts = rng.integers(0, len(data) - block_size, batch_size)
        window = starts[:, None] + np.arange(block_size + 1)
        chunk = data[window]
        return chunk[:, :-1].copy(), chunk[:, 1:].copy()

    def unigram_entropy(self):
        """Entropy (nats/char) of the training characters' frequencies: the loss of a model that
        knows only how common each character is."""
        counts = np.bincount(self.train, minlength=self.vocab_size).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())
