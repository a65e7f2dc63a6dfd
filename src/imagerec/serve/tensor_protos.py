"""TensorFlow's `TensorProto` (what TF Serving's gRPC API carries) ↔ numpy, within the server's limits.

Hand-written rather than `tf.make_ndarray`: that fills a declared shape from however few values a message holds
(a 10-byte message can ask for gigabytes), and it needs TensorFlow's eager runtime on the event loop. Here the
declared shape is checked against the limits and against the bytes or values actually sent, before any array
is made."""

import numpy as np

from imagerec.serve.limits import RequestError

# DataType enum values (tensorflow/core/framework/types.proto) → (numpy dtype, the repeated field of typed values)
NUMERIC = {1: ("<f4", "float_val"), 2: ("<f8", "double_val"), 3: ("<i4", "int_val"), 4: ("u1", "int_val"),
           5: ("<i2", "int_val"), 6: ("i1", "int_val"), 9: ("<i8", "int64_val"), 17: ("<u2", "int_val"),
           19: ("<f2", "half_val")}
DT_FLOAT, DT_STRING = 1, 7


def tensor_to_array(tensor, name: str, max_items: int):
    """A TensorProto → numpy array (numbers), or a list of bytes (DT_STRING: image files); RequestError 400."""
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.tensor_shape.unknown_rank or any(size < 0 for size in shape):
        raise RequestError(400, f"input {name!r}: its shape must be known ({shape})")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > max_items:
        raise RequestError(400, f"input {name!r}: shape {shape} holds {count:,} values, over the {max_items:,} "
                                "this server takes in one request")
    if tensor.dtype == DT_STRING:
        if len(tensor.string_val) != count:
            raise RequestError(400, f"input {name!r}: {len(tensor.string_val)} strings for shape {shape}")
        return list(tensor.string_val)
    if tensor.dtype not in NUMERIC:
        raise RequestError(400, f"input {name!r}: dtype {tensor.dtype} is not a number type or DT_STRING")
    dtype, field = NUMERIC[tensor.dtype]
    if tensor.tensor_content:
        if len(tensor.tensor_content) != count * np.dtype(dtype).itemsize:
            raise RequestError(400, f"input {name!r}: {len(tensor.tensor_content)} bytes of tensor_content for "
                                    f"shape {shape} ({count * np.dtype(dtype).itemsize} expected)")
        return np.frombuffer(tensor.tensor_content, dtype).reshape(shape)
    values = getattr(tensor, field)
    if len(values) != count:
        raise RequestError(400, f"input {name!r}: {len(values)} values in {field} for shape {shape} ({count} "
                                "expected; one value is not broadcast)")
    if tensor.dtype == 19:  # half_val holds each float16's bits in an int
        return np.asarray(values, np.uint16).view("<f2").reshape(shape)
    return np.asarray(values, dtype).reshape(shape)


def array_to_tensor(array: np.ndarray):
    """A float32 array → TensorProto (DT_FLOAT, tensor_content), as TF Serving answers."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size)
                                                   for size in array.shape])
    return tensor_pb2.TensorProto(dtype=DT_FLOAT, tensor_shape=shape,
                                  tensor_content=np.asarray(array, "<f4").tobytes())
