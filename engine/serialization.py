"""engine.save / engine.load: nested dicts of tensors, arrays and plain values in one .npz file.

The file is written to a temporary name in the same folder, flushed and fsync'ed, then renamed
over the target, so a crash (or Ctrl-C) never leaves a half-written checkpoint; a truncated or
foreign file is refused with a clear error.
"""
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from engine.tensor import Tensor

_FORMAT = "engine-checkpoint-v1"


def _flatten(obj, prefix, arrays, where):
    """JSON-able skeleton of obj; arrays go to `arrays` under generated keys."""
    if isinstance(obj, Tensor):
        key = f"a{len(arrays)}"
        arrays[key] = obj.numpy()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray) or (hasattr(obj, "__cuda_array_interface__") and hasattr(obj, "get")):
        key = f"a{len(arrays)}"
        arrays[key] = obj if isinstance(obj, np.ndarray) else obj.get()
        return {"__array__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, prefix, arrays, where), _flatten(v, prefix, arrays, where)]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__":
                [_flatten(v, prefix, arrays, where) for v in obj]}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save: cannot store an object of type {type(obj).__name__} at {where}")


def _unflatten(node, arrays):
    if isinstance(node, dict):
        if "__tensor__" in node:
            return Tensor._wrap(arrays[node["__tensor__"]])
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__dict__" in node:
            return {_unflatten(k, arrays): _unflatten(v, arrays) for k, v in node["__dict__"]}
        if "__list__" in node:
            return [_unflatten(v, arrays) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_unflatten(v, arrays) for v in node["__tuple__"])
    return node


def save(obj, path):
    """Write obj (dicts/lists of tensors, arrays, numbers, strings) to `path` atomically."""
    arrays = {}
    skeleton = _flatten(obj, "", arrays, "the top level")
    meta = json.dumps({"format": _FORMAT, "skeleton": skeleton})
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path, map_location=None, weights_only=None):
    """Read what `save` wrote; a truncated, corrupt or foreign file raises ValueError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise ValueError("no engine metadata")
            meta = json.loads(z["__meta__"].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, json.JSONDecodeError) as e:
        raise ValueError(f"load: {path} is not a readable engine checkpoint (truncated or corrupt?): {e}") from None
    if meta.get("format") != _FORMAT:
        raise ValueError(f"load: {path} has format {meta.get('format')!r}, expected {_FORMAT!r}")
    obj = _unflatten(meta["skeleton"], arrays)
    if map_location is not None and str(map_location) != "cpu":
        raise NotImplementedError("load: map_location other than 'cpu' is not supported; move tensors with .to()")
    return obj
