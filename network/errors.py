"""Errors raised by transports.  Every message names the peer and the operation; none carries a payload."""

from __future__ import annotations


class NetworkError(RuntimeError):
    """Base class of every transport failure."""


class ProtocolError(NetworkError):
    """A frame that breaks the wire protocol: bad magic, version, session, sequence, dtype, shape or size."""


class DuplicateTagError(ProtocolError):
    """A peer sent a second message under a tag whose first message we have not taken yet."""


def duplicate_tag(sender: str, tag: int, receiver: str) -> DuplicateTagError:
    """The error every transport raises, on the receiving side, when ``sender`` repeats a ``tag`` still waiting
    at ``receiver`` (both as errors name them).  The first message stays; the second is dropped."""
    return DuplicateTagError(f"{sender} sent tag {tag} to {receiver} twice")


class BindError(NetworkError):
    """This node could not bind its address; ``in_use``: because another process holds the port."""

    def __init__(self, message: str, *, in_use: bool) -> None:
        super().__init__(message)
        self.in_use = in_use


class HandshakeError(NetworkError):
    """A peer refused us, or we refused a peer, while the session was being set up."""


class PeerLostError(NetworkError):
    """A peer disconnected, aborted or stopped answering heartbeats while the session was running."""

    def __init__(self, message: str, *, peer: int | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class PeerClosedError(NetworkError):
    """A peer ended the session normally (sent goodbye) while we still waited for one of its messages."""

    def __init__(self, message: str, *, peer: int | None = None) -> None:
        super().__init__(message)
        self.peer = peer


def abort_reason(error: BaseException | None) -> str:
    """What an ABORT frame may tell the peers about why we stop: a transport error's message (it names peers,
    operations and tags, never payloads), otherwise only the exception's type (its text could hold data)."""
    if error is None:
        return "aborted by its application"
    if isinstance(error, NetworkError):
        return f"{type(error).__name__}: {error}"
    return f"aborted by its application ({type(error).__name__})"


class ReceiveTimeout(NetworkError):
    """No message with the awaited tag arrived before the receive deadline."""

    def __init__(self, message: str, *, peer: int | None = None) -> None:
        super().__init__(message)
        self.peer = peer
