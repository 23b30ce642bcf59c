"""engine.optim: optimizers and learning-rate schedules, named as torch.optim."""
from engine.optim import lr_scheduler  # noqa: F401
from engine.optim.adam import Adam, AdamW  # noqa: F401
from engine.optim.optimizer import Optimizer  # noqa: F401
from engine.optim.sgd import SGD  # noqa: F401
