"""The tensor and framing encodings of the flatmon wire format, in one place for the client, the
example and oracle generators and the benchmark comparison.

A flatmon.v1.Tensor is row-major, little-endian float32 with its shape (proto/flatmon/v1/tensor.proto);
a telemetry file is a stream of length-delimited messages (a varint byte count before each message,
as Java's writeDelimitedTo writes them and `flatmon compute` reads them).
"""
import numpy as np
from google.protobuf.internal.decoder import _DecodeVarint32
from google.protobuf.internal.encoder import _VarintBytes


def tensor(arr, tensor_pb2=None):
    """A float32 flatmon.v1.Tensor from an array-like. tensor_pb2: the generated module to build it
    with (default: the client's, generated from the repository's proto/)."""
    if tensor_pb2 is None:
        from . import _proto
        tensor_pb2 = _proto.load()[0]
    arr = np.ascontiguousarray(arr, dtype="<f4")
    return tensor_pb2.Tensor(shape=[int(s) for s in arr.shape], dtype=tensor_pb2.FLOAT32, data=arr.tobytes())


def varint(n):
    """The base-128 varint encoding of a non-negative integer."""
    return _VarintBytes(n)


def delimited(message):
    """A message with its varint length prefix."""
    b = message.SerializeToString()
    return varint(len(b)) + b


def read_delimited(data, cls):
    """The messages of class cls in a length-delimited byte string."""
    out, pos = [], 0
    while pos < len(data):
        n, pos = _DecodeVarint32(data, pos)
        m = cls()
        m.ParseFromString(data[pos:pos + n])
        out.append(m)
        pos += n
    return out
