"""TensorProto <-> numpy for the dtypes the serving contract uses (and a TF fallback).

Shared by the server and the client; works on the protos alone for the common dtypes,
so a request's tensor is checked (shape vs. number of values) with a clear message.
"""

from typing import Dict, Optional, Tuple

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# DataType -> (numpy dtype, repeated value field of TensorProto).
_NUMERIC: Dict[int, Tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
}
_DTYPE_BY_NUMPY = {dtype: enum for enum, (dtype, _) in _NUMERIC.items()}


def dtype_name(enum: int) -> str:
    """``DT_STRING`` -> ``string``, ``DT_FLOAT`` -> ``float``."""
    try:
        return types_pb2.DataType.Name(enum)[3:].lower()
    except ValueError:
        return f"dtype {enum}"


def tf_dtype(enum: int):
    """The tf.DType of a DataType enum; ValueError for one TensorFlow does not know."""
    import tensorflow as tf

    try:
        return tf.as_dtype(enum)
    except TypeError as err:
        raise ValueError(f"has an unknown dtype {enum}") from err


def shape_of(proto: tensor_pb2.TensorProto) -> Tuple[int, ...]:
    """The tensor's shape; raises ValueError for unknown rank or negative dims."""
    if proto.tensor_shape.unknown_rank:
        raise ValueError("has an unknown rank")
    dims = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise ValueError(f"has a negative dimension in shape {list(dims)}")
    return dims


def to_ndarray(proto: tensor_pb2.TensorProto, max_bytes: Optional[int] = None) -> np.ndarray:
    """TensorProto -> numpy (strings as an object array of bytes); ValueError if malformed,
    or if its values would take more than ``max_bytes`` (a shape can declare far more
    values than the message holds: TensorProto fills the rest with the last one)."""
    shape = shape_of(proto)
    declared = float(np.prod(shape, dtype=np.float64))  # no int64 overflow
    itemsize = _NUMERIC[proto.dtype][0].itemsize if proto.dtype in _NUMERIC else 8
    if max_bytes is not None and declared * itemsize > max_bytes:
        raise ValueError(f"declares {declared:.0f} values, more than {max_bytes} bytes")
    size = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == types_pb2.DT_STRING:
        values = proto.string_val
        if len(values) != size:
            raise ValueError(f"has {len(values)} string values for shape {list(shape)}")
        array = np.empty(size, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    if proto.dtype in _NUMERIC:
        dtype, field = _NUMERIC[proto.dtype]
        if proto.tensor_content:
            if len(proto.tensor_content) != size * dtype.itemsize:
                raise ValueError(
                    f"has {len(proto.tensor_content)} content bytes for "
                    f"{dtype_name(proto.dtype)} shape {list(shape)}"
                )
            return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape).copy()
        values = getattr(proto, field)
        if len(values) == size:
            return np.asarray(values, dtype=dtype).reshape(shape)
        if len(values) > size:
            raise ValueError(f"has {len(values)} values for shape {list(shape)}")
        # TensorProto semantics: the last value fills the rest, no values means zeros.
        fill = values[-1] if len(values) else 0
        array = np.full(size, fill, dtype=dtype)
        array[: len(values)] = list(values)
        return array.reshape(shape)
    if proto.dtype == types_pb2.DT_INVALID:
        raise ValueError("has no dtype")
    import tensorflow as tf  # rare dtypes (half, complex, ...)

    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # noqa: BLE001 - any conversion failure is the caller's input
        raise ValueError(f"cannot be converted: {err}") from None


def from_ndarray(array: np.ndarray) -> tensor_pb2.TensorProto:
    """numpy (bytes/str objects become DT_STRING) -> TensorProto."""
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto(
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]
        )
    )
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel()
        )
        return proto
    if array.dtype in _DTYPE_BY_NUMPY:
        proto.dtype = _DTYPE_BY_NUMPY[array.dtype]
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
        return proto
    import tensorflow as tf

    return tf.make_tensor_proto(array)
