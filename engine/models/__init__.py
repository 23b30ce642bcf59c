"""The seed workloads, in plain engine.nn code."""
from engine.models.cnn import CNN  # noqa: F401
from engine.models.gpt import GPT, GPTConfig  # noqa: F401
from engine.models.mlp import MLP  # noqa: F401
