"""Learning-rate schedules, as torch.optim.lr_scheduler: each step() sets every group's lr."""
import math


class LRScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def factor(self, epoch):
        """lr(epoch) / base lr."""
        raise NotImplementedError

    def _apply(self):
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * self.factor(self.last_epoch)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.last_epoch = state["last_epoch"]
        self._apply()


class StepLR(LRScheduler):
    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def factor(self, epoch):
        return self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def _apply(self):
        t = min(self.last_epoch, self.T_max)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class LinearLR(LRScheduler):
    """Linear warm-up: the factor goes from start_factor to end_factor over total_iters steps."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer)

    def factor(self, epoch):
        t = min(epoch, self.total_iters) / max(self.total_iters, 1)
        return self.start_factor + (self.end_factor - self.start_factor) * t


class LambdaLR(LRScheduler):
    def __init__(self, optimizer, lr_lambda):
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def factor(self, epoch):
        return self.lr_lambda(epoch)


class SequentialLR(LRScheduler):
    """Run `schedulers` one after another, switching at the given milestones (e.g. warm-up, then cosine)."""

    def __init__(self, optimizer, schedulers, milestones):
        self.schedulers, self.milestones = schedulers, list(milestones)
        self.optimizer, self.last_epoch = optimizer, 0
        self.base_lrs = schedulers[0].base_lrs
        for s in schedulers:
            s.last_epoch = 0
        schedulers[0]._apply()

    def step(self):
        self.last_epoch += 1
        i = sum(self.last_epoch >= m for m in self.milestones)
        start = self.milestones[i - 1] if i else 0
        s = self.schedulers[i]
        s.last_epoch = self.last_epoch - start
        s._apply()
