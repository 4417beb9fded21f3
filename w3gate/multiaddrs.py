"""Multiaddr checks for delegates and origins: every address must parse and end in ``/p2p/<peerID>``."""

from __future__ import annotations

from multiaddr import Multiaddr


class MultiaddrError(ValueError):
    pass


def check_multiaddr(text: str) -> None:
    """Raise MultiaddrError unless ``text`` is a valid multiaddr ending in ``/p2p/<peerID>``."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise MultiaddrError("a multiaddr is a string starting with '/'")
    try:
        addr = Multiaddr(text)
        protocols = addr.protocols()
    except Exception as exc:  # the library raises several error types for bad input
        raise MultiaddrError(str(exc) or type(exc).__name__) from None
    if not protocols or protocols[-1].name not in ("p2p", "ipfs"):
        raise MultiaddrError("it must end with /p2p/<peerID>")
