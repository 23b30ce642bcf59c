"""engine.nn: layers and the functional API, named as torch.nn."""
from engine.nn import functional  # noqa: F401
