"""engine.data: MNIST, character corpora and a DataLoader."""
from engine.data.dataloader import DataLoader, Dataset, TensorDataset  # noqa: F401
from engine.data.mnist import MNIST, load_mnist  # noqa: F401
from engine.data.text import CharCorpus, default_corpus  # noqa: F401
