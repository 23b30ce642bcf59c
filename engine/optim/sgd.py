"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
from engine import backend
from engine._array import array_module
from engine.backend import cpu
from engine.optim import updates
from engine.optim.optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def update(self, param, grad, state, group):
        first = "momentum_buffer" not in state
        if group["momentum"] and first:
            state["momentum_buffer"] = array_module(grad).zeros_like(param.data)
        buf = state.get("momentum_buffer")
        fused = backend.current() == "native" and cpu.fused_update_takes(param.data, grad, buf)
        (cpu if fused else updates).sgd_update(param.data, grad, buf, group["lr"], group["momentum"],
                                               group["dampening"], group["nesterov"],
                                               group["weight_decay"], first)
