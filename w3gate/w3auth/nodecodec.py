"""Node.js ``Buffer.from(s, 'hex' | 'base64')`` and ``buf.toString('ascii')`` semantics.

Crust's W3Auth handler decodes tokens and signatures with Node's lenient decoders, so tokens that wallets
and scripts produced for it rely on their quirks (unpadded base64, junk characters, trailing garbage after
a hex signature). Python's strict decoders would reject some of those tokens; these helpers reproduce
Node exactly (FORMAT.md 2.1 step 3 and the "Node hex" notation of section 4). They never raise on text
input: like Node they return whatever bytes could be decoded, possibly none.

Public for chain plugins: ``from w3gate.w3auth.nodecodec import node_hex, node_base64``.
"""

from __future__ import annotations

import binascii
import re

__all__ = ["node_hex", "node_base64", "node_ascii"]

_HEX_PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})*")
# Characters Node's base64 decoder keeps: both alphabets. Everything else is skipped.
_NOT_B64 = re.compile(r"[^A-Za-z0-9+/\-_]+")
_URL_TO_STD = str.maketrans("-_", "+/")
# Node 'ascii' decoding clears bit 7 of every byte.
_CLEAR_BIT7 = bytes(b & 0x7F for b in range(256))


def node_hex(s: str) -> bytes:
    """``Buffer.from(s, 'hex')``: hex pairs until the first pair that is not two hex digits.

    An odd trailing digit is dropped, and a ``0x`` prefix is *not* understood (it yields ``b""``).
    """
    match = _HEX_PAIRS.match(s)
    return bytes.fromhex(match.group(0)) if match else b""


def node_base64(s: str) -> bytes:
    """``Buffer.from(s, 'base64')``: both alphabets, junk skipped, stops at the first ``=``.

    Padding is optional and leftover bits (a lone trailing 6-bit group) are dropped. Node reads each
    UTF-16 code unit through a ``uint8_t`` cast, so code points above U+00FF count as their low byte.
    """
    if not s.isascii() and any(ord(c) > 0xFF for c in s):
        s = "".join(chr(ord(c) & 0xFF) for c in s)
    end = s.find("=")
    if end >= 0:
        s = s[:end]
    s = _NOT_B64.sub("", s).translate(_URL_TO_STD)
    if len(s) % 4 == 1:  # 6 leftover bits: no whole byte
        s = s[:-1]
    s += "=" * (-len(s) % 4)
    # Non-strict a2b_base64 ignores non-zero leftover bits, as Node does.
    return binascii.a2b_base64(s)


def node_ascii(data: bytes) -> str:
    """``buf.toString('ascii')``: every byte with bit 7 cleared; never fails."""
    return data.translate(_CLEAR_BIT7).decode("ascii")
