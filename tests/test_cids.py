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


def _library(text: str) -> tuple[str, str] | str:
    """What multiformats itself makes of ``text``: (key, order text), or "refused"."""
    try:
        cid = CID.decode(text)
    except Exception:  # noqa: BLE001 - any of its errors
        return "refused"
    if cid.hashfun.name == "identity":
        return "refused"
    key = str(cid.set(version=1, base="base32"))
    v0 = cid.codec.name == "dag-pb" and cid.hashfun.name == "sha2-256" and len(cid.raw_digest) == 32
    return key, str(cid.set(version=0, base="base58btc")) if v0 else key


def test_the_fast_base32_path_agrees_with_the_library_on_good_and_broken_texts() -> None:
    """parse() reads a CIDv1 in canonical base32 itself, once the library has accepted a CID of the same codec,
    hash and digest length: every text, valid or not, first seen or not, must come out as the library says."""
    import random

    rng = random.Random(7)
    texts = []
    for codec in ("dag-pb", "raw", "dag-cbor", "libp2p-key"):
        for hashfun, size in (("sha2-256", 32), ("sha2-512", 64), ("blake2b-256", 32), ("identity", 4)):
            digest = hashlib.sha512(codec.encode() + hashfun.encode()).digest()[:size]
            texts.append(str(CID("base32", 1, codec, multihash.wrap(digest, hashfun))))
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for good in list(texts):
        for _ in range(40):  # one character changed, cut, lengthened: mostly broken, some still valid
            i = rng.randrange(1, len(good))
            texts += [good[:i] + rng.choice(alphabet) + good[i + 1:], good[:i], good + rng.choice(alphabet),
                      good[:-1] + rng.choice(alphabet)]
    texts += ["b" + "a" * n for n in range(1, 12)] + ["bafybeih", "bafkreiaaa", "baeaaaaa"]
    for good in texts[:16]:  # the library's base32 decoder takes upper case after the "b": the key is lower case
        texts += ["b" + good[1:].upper(), good[:10] + good[10:].upper(), good[:-1] + good[-1].upper()]
    for _ in range(2):  # cold (the library decides the shape), then warm (the fast path alone)
        for text in texts:
            try:
                content = parse(text)
                got: tuple[str, str] | str = (content.key, content.order)
            except CidError:
                got = "refused"
            assert got == _library(text), text
