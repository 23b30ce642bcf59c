"""Devices: where a tensor's storage lives (NumPy on "cpu", CuPy on "cuda")."""
from engine._array import cupy, is_gpu_array


class device:
    """A device, named as in PyTorch: device("cpu"), device("cuda"), device("cuda:1")."""

    __slots__ = ("type", "index")

    def __init__(self, spec, index=None):
        if isinstance(spec, device):
            spec, index = spec.type, spec.index if index is None else index
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device: unknown device type {kind!r}; expected 'cpu' or 'cuda'")
        if idx:
            if not idx.isdigit():
                raise ValueError(f"device: bad device index in {spec!r}")
            index = int(idx)
        if kind == "cuda" and index is None:
            index = 0
        self.type, self.index = kind, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (TypeError, ValueError):
                return False
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


CPU = device("cpu")


def device_of(array):
    """The device an array lives on."""
    if is_gpu_array(array):
        return device("cuda", array.device.id)
    return CPU


def move(array, dev):
    """`array` on device `dev` (no copy when it is already there)."""
    dev = device(dev)
    if dev.type == "cpu":
        return array.get() if is_gpu_array(array) else array
    cp = require_cupy()
    count = cp.cuda.runtime.getDeviceCount()
    if dev.index >= count:
        raise RuntimeError(f"device {dev} does not exist: {count} CUDA device{'s' if count != 1 else ''} visible")
    if is_gpu_array(array) and array.device.id == dev.index:
        return array
    with cp.cuda.Device(dev.index):
        return cp.asarray(array)


def require_cupy():
    """The cupy module, or RuntimeError("CUDA is not available: <why>") when GPUs cannot be used."""
    from engine import cuda

    cuda.require_available()
    return cupy()
