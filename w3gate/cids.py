"""One content, one key, one Crust order, whatever text form its CID is written in.

A CID names content by its codec and multihash; its version (v0 ``Qm…`` or v1) and multibase (and a
case-insensitive base's case) only change the text. Crust is paid per order, so the text must not decide
how many orders one content gets:

- ``key``: what orders and ``cid`` filters key on: CIDv1 in base32 lower case, of the CID's codec and
  multihash. The codec stays in the key: pinning a ``raw`` CID fetches one block, a ``dag-pb`` CID with the
  same multihash fetches the whole DAG under that block, so one order for both would leave one user's
  content unstored.
- ``order``: the text placed in the Crust order. Crust's storage nodes pin the order's text and report
  what they sealed as go-cid's ``String()`` of it (v0 in base58btc, v1 in base32 lower case:
  crustio/go-ipfs-encryptor ``StartSeal``), and the chain counts a report only for the ``FilesV2`` key
  with exactly those bytes: an order in any other text would be paid and never counted as stored. Of
  the two, v0 where the content has one (dag-pb, sha2-256), since that is what ``ipfs add`` prints by
  default and what Crust's own pinner orders as given, so the order joins the chain's existing record
  of that content rather than opening a second one; v1 base32 (the key) otherwise.
- an identity multihash holds its data inside the CID: there is nothing for anyone to store (``bafkqaaa``
  is the empty block), so such CIDs are refused.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import base58
from multiformats import CID, varint

SHA2_256_32 = b"\x12\x20"  # a multihash's code and length: sha2-256, 32 bytes (what CIDv0 allows)


class CidError(ValueError):
    """Not a CID, or one that holds nothing to store; the message reads after the CID's text."""


@dataclass(frozen=True)
class ContentId:
    text: str  # as the user wrote it: returned to them unchanged
    key: str  # CIDv1, base32 lower case
    order: str  # the text a Crust order carries


def parse(text: str) -> ContentId:
    """The text's content key and order text; :class:`CidError` if it is no CID or holds no data to store."""
    fast = _parse_v1_base32(text)
    if fast is not None:
        hash_name, order = fast
        if hash_name == "identity":
            raise CidError(NO_DATA)
        return ContentId(text, text, order)
    cid = _decode(text)
    if cid.hashfun.name == "identity":
        raise CidError(NO_DATA)
    key, order = _texts(cid)
    return ContentId(text, key, order)


NO_DATA = "holds no data to store: its multihash is the identity hash, so the data is inside the CID itself"
# (codec, multihash code, digest length) -> (codec name, hash name) of CIDs the library accepted: what else it
# checks of a CIDv1 depends on nothing more (the digest's bytes are any bytes of that length)
_SHAPES: dict[tuple[int, int, int], tuple[str, str]] = {}
MAX_SHAPES = 1024  # a bound on what clients can make this keep (real CIDs use a handful)


def _decode(text: str) -> CID:
    try:
        return CID.decode(text)
    except Exception as exc:  # noqa: BLE001 - multiformats raises several error types
        raise CidError(f"is not a valid CID: {exc}") from None


def _parse_v1_base32(text: str) -> tuple[str, str] | None:
    """(hash name, order text) of a CIDv1 written as its key is (base32 lower case and canonical: no upper case,
    no stray bits, checked by encoding the bytes again): then the key is the text itself.
    ``CID.decode`` costs ~250 us, most of it in runtime type checks of the objects it builds; here the
    standard library's base32 decoder and the library's varint decoder read the parts, and the codec and
    hash are named by ``CID.decode`` once per shape of CID (codec, hash, digest length), which is all else it
    checks.
    None: not such a text, or a shape not yet seen; ``CID.decode`` decides (and raises its own errors)."""
    if text[:1] != "b":
        return None
    body = text[1:]
    try:
        # multibase's ``b`` is RFC 4648 base32, lower case, unpadded: the standard library's decoder reads it at a
        # third of multibase.decode's cost (its runtime type checks); the canonical check below refuses what
        # the stricter library would (upper case, stray bits), and CID.decode still decides every other text
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        version, n_version, _ = varint.decode_raw(raw)
        codec, n_codec, _ = varint.decode_raw(raw[n_version:])
        at = n_version + n_codec  # the multihash
        hash_code, n_hash, _ = varint.decode_raw(raw[at:])
        length, n_length, _ = varint.decode_raw(raw[at + n_hash:])
    except Exception:  # noqa: BLE001 - any refusal: CID.decode decides, with its own message
        return None
    if version != 1 or len(raw) - (at + n_hash + n_length) != length:
        return None
    if base64.b32encode(raw).decode().lower().rstrip("=") != body:  # canonical: lower case, no stray bits
        return None
    shape = (codec, hash_code, length)
    names = _SHAPES.get(shape)
    if names is None:
        cid = _decode(text)  # raises for a shape the library refuses
        names = (cid.codec.name, cid.hashfun.name)
        if len(_SHAPES) < MAX_SHAPES:
            _SHAPES[shape] = names
    multihash = raw[at:]
    if names[0] == "dag-pb" and multihash[:2] == SHA2_256_32:
        return names[1], base58.b58encode(multihash).decode()
    return names[1], text


def _texts(cid: CID) -> tuple[str, str]:
    """(key, order text) of a parsed CID, written from its codec and multihash bytes: ``CID.set`` and
    ``raw_digest`` re-validate everything and cost three times the parse itself (tests/test_cids.py checks
    these texts against the library's own)."""
    key = "b" + base64.b32encode(b"\x01" + varint.encode(cid.codec.code) + cid.digest).decode().lower().rstrip("=")
    if cid.codec.name == "dag-pb" and cid.digest[:2] == SHA2_256_32:
        return key, base58.b58encode(cid.digest).decode()  # CIDv0: the bare multihash in base58btc
    return key, key


def key_of_stored(text: str, max_len: int = 255) -> tuple[str, str, bool]:
    """(key, order text, holds data) of a CID stored by an earlier release. Text that does not parse (none
    should), or whose key would not fit the column (``max_len``), is its own key: it keeps working as before."""
    try:
        cid = CID.decode(text)
    except Exception:  # noqa: BLE001 - any parse failure: keep the text as it is
        return text, text, True
    key, order = _texts(cid)
    holds_data = cid.hashfun.name != "identity"
    return (key, order, holds_data) if len(key) <= max_len else (text, text, holds_data)
