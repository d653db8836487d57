"""The benchmark suite behind ``smpc bench`` (also ``python -m benchmarks`` from a checkout): time, bytes and
rounds per op for 2 and 3 parties over CurveZMQ, against plain torch and the protocols' theory."""
