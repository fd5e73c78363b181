"""Write one malformed steering record (a case of tests/test_steering_bad_records.py), then a good one when
the variable types allow it, over a real SST reverse stream; waits for one reader at Open.

``python tests/faults/sst_bad_writer.py STREAM CASE``
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> int:
    import adios2
    import adios2.bindings as b

    from tests.test_steering_bad_records import CASES, GOOD, _put

    stream, case = sys.argv[1], sys.argv[2]
    bad = CASES[case]
    retyped = any(isinstance(v, (np.generic, np.ndarray)) for v in bad.values())
    good = dict(GOOD, seq=2, args=json.dumps({"name": "dt", "value": 0.25}), set_value=0.25)
    io = adios2.Adios().declare_io("Steering")
    io.set_engine("SST")
    io.set_parameters({"RendezvousReaderCount": "1", "QueueLimit": "8", "QueueFullPolicy": "Block",
                       "DataTransport": "WAN", "OpenTimeoutSecs": "60"})
    engine = io.open(stream, b.Mode.Write)
    for record in [bad] + ([] if retyped else [good]):
        engine.begin_step()
        for name, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, np.generic):
                value = np.int64(value) if isinstance(value, int) else np.float64(value)
            _put(io, engine, name, value)
        engine.end_step()
    time.sleep(1.0)
    engine.close()
    print("retyped" if retyped else "plain", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
