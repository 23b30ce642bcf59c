"""Module and Parameter, with PyTorch's names and behaviour.

A Module registers the Parameters, buffers and sub-modules assigned to its attributes, so
parameters(), state_dict() and to() walk the whole tree; state_dict keys are dotted paths
("blocks.0.attn.weight") as in PyTorch.
"""
from collections import OrderedDict

import numpy as np

from engine import dtypes
from engine.autograd import no_grad
from engine.tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module's learnable weight: requires grad by default."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.zeros(0, dtype=dtypes.get_default_dtype())
        array = data.data if isinstance(data, Tensor) else np.asarray(data)
        self.data, self.grad, self._ctx, self._version, self._retains_grad = array, None, None, 0, False
        self.requires_grad = requires_grad

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ---------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called")
        if isinstance(value, Parameter):
            target = self._parameters
        elif isinstance(value, Module):
            target = self._modules
        elif name in self.__dict__.get("_buffer_names", ()) and (value is None or isinstance(value, Tensor)):
            target = self._buffers
        else:
            target = None
        for store in (self._parameters, self._buffers, self._modules):
            if store is not target:
                store.pop(name, None)
        if target is None:
            object.__setattr__(self, name, value)
            return
        # Replacing an entry keeps its place, so state_dict() order does not depend on
        # reassignments (weight tying, buffer updates), as in PyTorch.
        target[name] = value
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that is state but not a parameter: moved by to() and listed by buffers();
        in state_dict() (and so expected by load_state_dict()) only when persistent."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: the name must be a non-empty string without '.', "
                           f"got {name!r}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: cannot assign a {type(tensor).__name__} to buffer "
                            f"{name!r} (a Tensor or None is required)")
        if name not in self._buffers and (name in self._parameters or name in self._modules
                                          or hasattr(self, name)):
            raise KeyError(f"register_buffer: attribute {name!r} already exists")
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        non_persistent = self.__dict__.setdefault("_non_persistent", set())
        if persistent:
            non_persistent.discard(name)
        else:
            non_persistent.add(name)
        self._buffers[name] = tensor

    def add_module(self, name, module):
        setattr(self, name, module)

    # ---- calling ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal -----------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, parameter) pairs; a parameter shared by two modules appears once."""
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in modules:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in modules:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    def apply(self, fn):
        """Call fn on every sub-module (children first) and on self, as in PyTorch."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ---------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # ---- devices and dtypes -------------------------------------------------------------------
    def _move(self, convert):
        """Replace every parameter's and buffer's data with convert(data), keeping identities
        (an optimizer built before .to() still holds the same Parameter objects)."""
        with no_grad():
            for m in self.modules():
                for p in m._parameters.values():
                    if p is not None:
                        p.data = convert(p.data)
                        if p.grad is not None:
                            p.grad.data = convert(p.grad.data)
                for name, b in m._buffers.items():
                    if b is not None:
                        b.data = convert(b.data)
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=False):
        """to(device), to(dtype), to(device, dtype), to(tensor): floating state takes the dtype."""
        from engine.device import device as Device

        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, Device)):
                device = a
            else:
                dtype = dtypes.to_dtype(a)

        def convert(array):
            t = Tensor._wrap(array)
            if device is not None:
                t = t.to(device)
            if dtype is not None and dtypes.is_floating(array.dtype):
                t = t.to(dtype)
            return t.data

        return self._move(convert)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """OrderedDict of dotted name -> tensor (parameters and persistent buffers)."""
        out = OrderedDict() if destination is None else destination
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            lead = f"{mod_prefix}." if mod_prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[lead + name] = p if keep_vars else p.detach()
            skip = m.__dict__.get("_non_persistent", ())
            for name, b in m._buffers.items():
                if b is not None and name not in skip:
                    out[lead + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy tensors from `state_dict` into this module's parameters and buffers."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}: "
                               f"missing keys {missing}, unexpected keys {unexpected}")
        with no_grad():
            for k, target in own.items():
                if k not in state_dict:
                    continue
                src = state_dict[k]
                src_shape = tuple(src.shape)
                if src_shape != tuple(target.shape):
                    raise RuntimeError(f"load_state_dict: size mismatch for {k}: copying a param "
                                       f"with shape {src_shape}, the shape in the current model is "
                                       f"{tuple(target.shape)}")
                target.copy_(src)
        return _IncompatibleKeys(missing, unexpected)

    # ---- printing -----------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        inner = ([extra] if extra else []) + lines
        return f"{type(self).__name__}(\n  " + "\n  ".join(inner) + "\n)"


class _IncompatibleKeys(tuple):
    def __new__(cls, missing, unexpected):
        return super().__new__(cls, (missing, unexpected))

    @property
    def missing_keys(self):
        return self[0]

    @property
    def unexpected_keys(self):
        return self[1]
