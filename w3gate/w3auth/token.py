"""Reading the ``Authorization`` header exactly as Crust's W3Auth handler does (FORMAT.md section 2.1).

Existing users' tokens were made for that handler, so its quirks are kept on purpose: the scheme test
is a substring test, only the second space-separated word is the token, base64 and ASCII decoding follow
Node, the credentials are cut at ``:`` and ``-`` keeping only the first pieces. One deliberate difference:
the scheme is matched without regard to case (RFC 9110 section 11.1), so ``bearer TOKEN`` works too.
"""

from __future__ import annotations

from typing import Final

from w3gate.hookspecs import Credentials
from w3gate.w3auth.nodecodec import node_ascii, node_base64

__all__ = [
    "AuthError",
    "EMPTY_SIGNATURE",
    "extract_token",
    "parse_token",
    "INVALID_SIGNATURE",
    "UNSUPPORTED",
    "js_trim",
    "parse_authorization",
]

EMPTY_SIGNATURE: Final = "Empty Signature"
INVALID_SIGNATURE: Final = "Invalid Signature"
UNSUPPORTED: Final = "Unsupported web3 signature"

DEFAULT_CHAIN_TYPE: Final = "sub"
MAX_EXTRA_PIECES: Final = 4  # txMsg, tyMsg, tzMsg, tkMsg

# What JavaScript's String.prototype.trim() removes (WhiteSpace + LineTerminator); Python's str.strip()
# would also remove \x1c-\x1f and \x85, which JS keeps.
JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


class AuthError(Exception):
    """Authentication failed; ``details`` is the 401 ``error.details`` text the client sees.

    The exception text is only the public detail: never put a token or signature in it.
    """

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


def js_trim(s: str) -> str:
    """JavaScript ``s.trim()``."""
    return s.strip(JS_WHITESPACE)


def extract_token(header: str | None) -> str:
    """The token word of an ``Authorization`` header (handler steps 1-2), still base64.

    Raises ``AuthError("Empty Signature")`` when the header is missing or has neither ``"Basic "`` nor
    ``"Bearer "`` in it (in any case, anywhere), ``AuthError("Invalid Signature")`` when the trimmed
    value has no second space-separated word. Only the second word counts, whatever the first one is.
    """
    folded = (header or "").lower()
    if not header or ("basic " not in folded and "bearer " not in folded):
        raise AuthError(EMPTY_SIGNATURE)
    words = js_trim(header).split(" ")
    if len(words) < 2:  # "Bearer" alone: the handler's token is undefined and Buffer.from throws
        raise AuthError(INVALID_SIGNATURE)
    return words[1]


def parse_token(token: str) -> Credentials:
    """Decode a token word into :class:`Credentials` (handler steps 3-6); never fails.

    A token without ``:`` gives ``signature == ""`` (the handler's ``undefined``: it can never verify).
    The chain type is left raw (not trimmed or lower-cased): the alias lookup normalises it.
    """
    credentials = node_ascii(node_base64(token))
    left, _, signature = credentials.partition(":")
    signature = signature.split(":", 1)[0]  # pieces after a second ':' are dropped
    if "-" not in left:
        left = f"{DEFAULT_CHAIN_TYPE}-{left}"
    pieces = left.split("-")
    return Credentials(
        chain_type=pieces[0],
        address=pieces[1],
        signature=signature,
        extra=tuple(pieces[2 : 2 + MAX_EXTRA_PIECES]),
    )


def parse_authorization(header: str | None) -> Credentials:
    """Split an ``Authorization`` header value into :class:`Credentials` like the reference handler.

    Raises ``AuthError("Empty Signature")`` / ``AuthError("Invalid Signature")`` as :func:`extract_token`.
    """
    return parse_token(extract_token(header))
