"""Reverse-mode autograd: the Function base class, grad mode, and the backward walk.

Every differentiable op is a Function subclass with `forward` and `backward` side by side. Both
work on raw arrays (NumPy or CuPy); `Function.apply` unwraps Tensors, runs `forward`, and, when
any input needs a gradient, records the node on the output so `Tensor.backward` can find it.
"""
import contextlib
import threading

from engine import amp

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


def set_grad_enabled(mode):
    _state.grad_enabled = bool(mode)


class _GradMode(contextlib.ContextDecorator):
    """Context manager and decorator that sets grad mode and restores it on exit."""

    def __init__(self, mode):
        self.mode = mode
        self.prev = []  # a stack: one object may be entered again before it exits (recursion)

    def __enter__(self):
        self.prev.append(is_grad_enabled())
        set_grad_enabled(self.mode)

    def __exit__(self, *exc):
        set_grad_enabled(self.prev.pop())
        return False

    def _recreate_cm(self):
        # ContextDecorator's hook: each call of a decorated function gets its own context, so
        # calls on several threads never share the saved modes.
        return _GradMode(self.mode)

    def __call__(self, fn=None):
        # Usable both as `@no_grad` and `@no_grad()`.
        if fn is None:
            return self
        return super().__call__(fn)


def no_grad(fn=None):
    """`with no_grad():` or `@no_grad` / `@no_grad()`: ops record no graph inside."""
    ctx = _GradMode(False)
    return ctx(fn) if callable(fn) else ctx


def enable_grad(fn=None):
    ctx = _GradMode(True)
    return ctx(fn) if callable(fn) else ctx


class Function:
    """One node of the graph. Subclasses define:

    forward(self, *args, **kwargs) -> array    args: arrays where the caller passed Tensors
    backward(self, grad) -> grads              one gradient (array or None) per Tensor input

    `forward` keeps on `self` whatever `backward` needs (the micrograd habit: the math of one op
    is read in one class).
    """

    # Tensors this node was applied to, in argument order, and their versions at that time
    # (an in-place change to one of them afterwards makes the saved values stale).
    inputs = ()
    versions = ()
    # The autocast precision the forward ran in (engine/amp.py); the backward runs in it too.
    precision = None
    # False for ops whose backward never reads their inputs' values (add, reshape, ...), so an
    # in-place change to such an input after the op is harmless.
    saves_inputs = True

    @classmethod
    def apply(cls, *args, **kwargs):
        from engine.tensor import Tensor

        fn = cls()
        fn.precision = amp.current()
        tensors = [a for a in args if isinstance(a, Tensor)]
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = fn.forward(*raw, **kwargs)
        # Only floating outputs carry gradients (x.long() of a tensor that requires grad does not).
        needs_grad = (is_grad_enabled() and any(t.requires_grad for t in tensors)
                      and out.dtype.kind == "f")
        result = Tensor._wrap(out, requires_grad=needs_grad)
        if needs_grad:
            fn.inputs = tensors
            fn.versions = [t._version for t in tensors]
            result._ctx = fn
        return result

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def check_versions(self):
        if not self.saves_inputs:
            return
        for t, v in zip(self.inputs, self.versions):
            if t._version != v:
                raise RuntimeError(
                    f"backward through {type(self).__name__}: one of its inputs (shape "
                    f"{tuple(t.shape)}) was modified in place after it was used; its saved "
                    "value is stale. Clone the tensor before changing it in place.")


def _topological_order(root):
    """Nodes reachable from `root`, each after every node that consumes its output (iterative,
    so deep graphs do not hit Python's recursion limit)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            # inputs is None once a backward without retain_graph freed the node; the walk in
            # backward() then reports it.
            for parent in t._ctx.inputs or ():
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()
    return order


def backward(root, grad, retain_graph=False):
    """Accumulate d(root)/d(leaf) into every leaf's `.grad`, walking the graph once."""
    from engine import backend
    from engine.tensor import Tensor

    grads = {id(root): grad}
    for t in _topological_order(root):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        if t._ctx is None or t._retains_grad:
            # A copy the first time: `g` may be the caller's gradient or shared with another
            # input (add passes one array to both), and .grad is changed in place (zero_grad).
            t.grad = Tensor._wrap(g.copy()) if t.grad is None else Tensor._wrap(t.grad.data + g)
        fn = t._ctx
        if fn is None:
            continue
        if fn.inputs is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved values were "
                "freed by the first backward. Pass retain_graph=True to the first call.")
        fn.check_versions()
        if fn.precision == amp.current():
            in_grads = fn.backward(g)
        else:
            with amp._use(fn.precision):
                in_grads = fn.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(fn.inputs):
            raise RuntimeError(f"{type(fn).__name__}.backward returned {len(in_grads)} gradients "
                               f"for {len(fn.inputs)} inputs")
        for parent, pg in zip(fn.inputs, in_grads):
            if pg is None or not parent.requires_grad:
                continue
            if pg.shape != parent.data.shape:
                raise RuntimeError(f"{type(fn).__name__}.backward gave a gradient of shape "
                                   f"{pg.shape} for an input of shape {parent.data.shape}")
            if pg.dtype != parent.data.dtype:
                # NOTE: a gradient has its input's dtype. NumPy 1.x promotes a 0-d float32 array
                # combined with a Python number to float64 (value-based casting), so a backward
                # written in plain array arithmetic can return float64 for a float32 scalar.
                pg = pg.astype(parent.data.dtype)
            prev = grads.get(id(parent))
            grads[id(parent)] = pg if prev is None else backend.for_array(pg).add(prev, pg)
        if not retain_graph:
            fn.__dict__.clear()  # drop the arrays forward saved
            fn.inputs = None

