"""w3gate.cids writes a CID's key and order text from its bytes: they must be what multiformats itself writes."""

from __future__ import annotations

import hashlib

import pytest
from multiformats import CID, multihash

from w3gate.cids import CidError, parse

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out


@pytest.mark.parametrize("codec", ["dag-pb", "raw", "dag-cbor", "dag-json", "libp2p-key"])
@pytest.mark.parametrize("hashfun", ["sha2-256", "sha2-512", "blake2b-256", "sha3-256"])
def test_key_and_order_text_are_the_librarys_own(codec: str, hashfun: str) -> None:
    for i in range(5):
        cid = CID("base32", 1, codec, multihash.digest(hashlib.sha256(bytes([i])).digest(), hashfun))
        v0_ok = codec == "dag-pb" and hashfun == "sha2-256"
        forms = [cid.encode(b) for b in ("base32", "base32upper", "base58btc", "base36", "base16", "base64url")]
        forms += [str(cid.set(version=0, base="base58btc"))] if v0_ok else []
        for form in forms:
            content = parse(form)
            assert content.text == form
            assert content.key == str(cid.set(base="base32"))
            assert content.order == (str(cid.set(version=0, base="base58btc")) if v0_ok else content.key)


@pytest.mark.parametrize("text, fragment", [
    ("bafkqaaa", "no data to store"),
    (str(CID("base32", 1, "dag-pb", multihash.wrap(b"inline", "identity"))), "no data to store"),
    ("Qm", "not a valid CID"),
    ("bafy", "not a valid CID"),
    ("", "not a valid CID"),
])
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(CidError, match=fragment):
        parse(text)
