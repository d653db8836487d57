"""What several test modules share, so that no test module imports another.

- ``harness``: run one program on n parties, in-process (threads) or as processes over ZeroMQ.
"""
