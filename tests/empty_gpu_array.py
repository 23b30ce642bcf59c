"""A stand-in for an empty GPU array, for testing the _cuda bindings' checks on any machine."""


class EmptyGpuArray:
    """An empty array as a GPU library exports it: an empty array has no memory to locate, so the
    binding checks everything else about it without a device."""

    def __init__(self, shape, typestr="<f4", strides=None):
        assert 0 in shape
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (0, False),
                                         "strides": strides, "version": 3}
