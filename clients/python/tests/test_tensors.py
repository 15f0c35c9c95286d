"""The wire encodings of flatmon_client.tensors against the protobuf and tensor formats they implement."""
import unittest

import support  # noqa: F401  (sets sys.path)

import numpy as np

from flatmon_client import tensor_pb2, telemetry_pb2
from flatmon_client.tensors import delimited, read_delimited, tensor, varint


class TensorsTest(unittest.TestCase):
    def test_varint_is_protobuf_base128(self):
        # the examples of the protobuf encoding guide: 1 -> 01, 150 -> 96 01, 300 -> ac 02
        self.assertEqual(varint(1), b"\x01")
        self.assertEqual(varint(150), b"\x96\x01")
        self.assertEqual(varint(300), b"\xac\x02")
        self.assertEqual(varint(2 ** 28), b"\x80\x80\x80\x80\x01")

    def test_tensor_is_row_major_little_endian_float32(self):
        a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 0.5 - 3
        t = tensor(np.asfortranarray(a))          # memory order must not leak into the wire order
        self.assertEqual(list(t.shape), [2, 3, 4])
        self.assertEqual(t.dtype, tensor_pb2.FLOAT32)
        self.assertEqual(t.data[:4], np.float32(-3.0).newbyteorder("<").tobytes())
        np.testing.assert_array_equal(np.frombuffer(t.data, dtype="<f4").reshape(2, 3, 4), a.astype(np.float32))

    def test_delimited_stream_round_trip(self):
        recs = [telemetry_pb2.TelemetryRecord(measurement_done=telemetry_pb2.MeasurementDone(run_id="r%d" % i, step=i))
                for i in range(3)]
        data = b"".join(delimited(r) for r in recs)
        self.assertEqual(data[0], recs[0].ByteSize())
        self.assertEqual(read_delimited(data, telemetry_pb2.TelemetryRecord), recs)


if __name__ == "__main__":
    unittest.main()
