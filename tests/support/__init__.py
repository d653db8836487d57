"""What several test modules share, so that no test module imports another.

- ``harness``: run one program on n parties, in-process (threads) or as processes over ZeroMQ.
- ``checks``: every party opened the same results, each within its bound (``run_and_collect``, ``check_all``).
- ``strategies``: hypothesis strategies for tensors and shapes.
- ``nn_bounds``: bounds propagated through smpc.nn's computations, and the torch models the nn tests share.
- ``statistics``: uniformity checks and two-sample tests of what parties see.
- ``recording``: a transport proxy that records every message a party sends and receives.
- ``cli``: the smpc command run as a user runs it, background nodes, keys and rosters.
- ``loan``: the loan job's bank files and schema, and readers of its audit logs.
- ``frames``: the receiver's path for a message, the one check of what it accepted, hostile frame generators.
- ``nodes``: ZmqTransport nodes of one test on 127.0.0.1, and forged CurveZMQ clients.
"""
