"""engine.nn: layers and the functional API, named as torch.nn."""
from engine.nn import functional, init, utils  # noqa: F401
from engine.nn.containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from engine.nn.layers import (AvgPool2d, Conv2d, Dropout, Embedding, Flatten, GELU,  # noqa: F401
                              Identity, LayerNorm, Linear, LogSoftmax, MaxPool2d, ReLU, SiLU,
                              Sigmoid, Softmax, Tanh)
from engine.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: F401
from engine.nn.module import Module, Parameter  # noqa: F401
from engine.nn.transformer import MLP, CausalSelfAttention, TransformerBlock  # noqa: F401
