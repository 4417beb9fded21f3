"""Parsing the Authorization header like Crust's W3Auth handler (FORMAT.md 2.1) and the Node decoders."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from w3gate.hookspecs import Credentials
from w3gate.w3auth.nodecodec import node_ascii, node_base64, node_hex
from w3gate.w3auth.token import AuthError, parse_authorization

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

VECTORS = json.loads((Path(__file__).parent / "data" / "w3auth_vectors.json").read_text())["vectors"]
BY_ID = {v["id"]: v for v in VECTORS}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def error_of(header: str | None) -> str:
    with pytest.raises(AuthError) as info:
        parse_authorization(header)
    return info.value.details


# -- Node base64 --------------------------------------------------------------------------------------


def test_node_base64_round_trips_random_data_in_every_form() -> None:
    rng = random.Random(1234)
    for length in range(0, 70):
        data = rng.randbytes(length)
        std = base64.b64encode(data).decode()
        url = base64.urlsafe_b64encode(data).decode()
        assert node_base64(std) == data
        assert node_base64(std.rstrip("=")) == data  # padding optional
        assert node_base64(url) == data  # URL-safe alphabet
        assert node_base64(url.rstrip("=")) == data


def test_node_base64_skips_junk_and_stops_at_first_equals() -> None:
    assert node_base64("QU*JD\n R E!!") == b"ABCD"
    assert node_base64("QUJD=REVG") == b"ABC"  # nothing after the first '='
    assert node_base64("QQ=junk") == b"A"
    assert node_base64("!!!!") == b""
    assert node_base64("") == b""


def test_node_base64_drops_leftover_bits() -> None:
    assert node_base64("QUJDR") == b"ABC"  # a lone 6-bit group makes no byte
    assert node_base64("QR") == b"A"  # non-zero leftover bits of "R" are ignored


def test_node_base64_mixed_alphabets_in_one_string() -> None:
    data = bytes([0xFB, 0xFF, 0xBF, 0xFB, 0xFF, 0xBF])
    assert base64.b64encode(data) == b"+/+/+/+/"
    assert node_base64("+/-_+/-_") == data


def test_node_base64_reads_code_points_through_a_byte_cast() -> None:
    # Node casts each UTF-16 unit to uint8: U+0141 counts as 0x41 'A', U+013D as '='.
    assert node_base64("\u0141\u0141\u0141\u0141") == node_base64("AAAA")
    assert node_base64("QUJD\u013dREVG") == b"ABC"


# -- Node hex and ascii -------------------------------------------------------------------------------


def test_node_hex() -> None:
    assert node_hex("00ff") == b"\x00\xff"
    assert node_hex("ABcd") == b"\xab\xcd"
    assert node_hex("0x00ff") == b""  # "0x" is not a hex pair: nothing decoded
    assert node_hex("abc") == b"\xab"  # odd trailing digit dropped
    assert node_hex("abzz12") == b"\xab"  # stops at the first bad pair
    assert node_hex("ab1g34") == b"\xab"
    assert node_hex("") == b""


def test_node_ascii_clears_bit_7() -> None:
    assert node_ascii(bytes([0xF3, 0x41, 0x80, 0xFF])) == "sA\x00\x7f"


# -- header parsing -----------------------------------------------------------------------------------


def test_basic_and_bearer_both_accepted() -> None:
    expected = Credentials("sub", "5Abc", "0x1234")
    assert parse_authorization("Bearer " + b64("sub-5Abc:0x1234")) == expected
    assert parse_authorization("Basic " + b64("sub-5Abc:0x1234")) == expected


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer\t" + b64("sub-a:b"), "Token " + b64("sub-a:b"), "Bearer", "Bearer" + b64("sub-a:b")],
)
def test_empty_signature_when_no_scheme_substring(header: str | None) -> None:
    assert error_of(header) == "Empty Signature"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "basic", "BASIC"])
def test_scheme_in_any_case(scheme: str) -> None:
    """RFC 9110 section 11.1: the scheme is case-insensitive (the reference handler refused these)."""
    assert parse_authorization(f"{scheme} " + b64("sub-5Abc:0x1234")) == Credentials("sub", "5Abc", "0x1234")


def test_scheme_alone_is_invalid_signature() -> None:
    # "Bearer " passes the substring test, then trim() leaves one word: the token is undefined.
    assert error_of("Bearer ") == "Invalid Signature"
    assert error_of("  Basic   ") == "Invalid Signature"


def test_scheme_is_a_substring_test_and_only_the_second_word_counts() -> None:
    token = b64("sub-5Abc:0x12")
    assert parse_authorization("xBearer " + token).address == "5Abc"
    assert parse_authorization("whatever Basic x " + token).address != "5Abc"  # 2nd word is "Basic"
    assert parse_authorization("Bearer " + token + " trailing words").address == "5Abc"
    assert parse_authorization("  Bearer " + token + "  ").address == "5Abc"  # trimmed


def test_two_spaces_give_empty_credentials() -> None:
    assert parse_authorization("Bearer  " + b64("sub-5Abc:0x12")) == Credentials("sub", "", "")


def test_default_chain_type_when_no_dash() -> None:
    assert parse_authorization("Bearer " + b64("5Abc:0x12")) == Credentials("sub", "5Abc", "0x12")
    # the '-' test is on the left part only: a '-' in the signature does not count
    assert parse_authorization("Bearer " + b64("5Abc:0x-12")) == Credentials("sub", "5Abc", "0x-12")


def test_dash_and_colon_splitting() -> None:
    c = parse_authorization("Bearer " + b64("elr-erd1x-a-b-c-d-e-f:sig:more:parts"))
    assert c == Credentials("elr", "erd1x", "sig", ("a", "b", "c", "d"))  # e, f and ':more' dropped
    c = parse_authorization("Bearer " + b64("ava-X-avax1q:sig"))
    assert (c.address, c.extra) == ("X", ("avax1q",))  # an address with '-' is cut
    c = parse_authorization("Bearer " + b64("near-ed25519:2GT9:sig"))
    assert (c.address, c.signature) == ("ed25519", "2GT9")  # an address with ':' is cut
    assert parse_authorization("Bearer " + b64("-addr:sig")).chain_type == ""
    assert parse_authorization("Bearer " + b64(" SUB -addr:sig")).chain_type == " SUB "  # raw


def test_no_colon_gives_empty_signature() -> None:
    assert parse_authorization("Bearer " + b64("sub-5Abc")) == Credentials("sub", "5Abc", "")
    assert parse_authorization("Bearer ====") == Credentials("sub", "", "")
    assert parse_authorization("Bearer !!!!") == Credentials("sub", "", "")


def test_high_bit_bytes_are_folded_to_ascii() -> None:
    raw = bytes([ord("s") | 0x80]) + b"ub-5Abc:0x12"
    header = "Bearer " + base64.b64encode(raw).decode()
    assert parse_authorization(header) == Credentials("sub", "5Abc", "0x12")


# -- the vectors' parser edge cases -------------------------------------------------------------------

# Vectors whose `credentials` field is the intended token, not what the handler decodes from the header.
NOT_DECODED_AS_RECORDED = {"v024": "two spaces: the token is the empty 2nd word",
                           "v049": "scheme only: no token"}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector_header_parses_like_the_handler(vector: dict) -> None:
    header = vector["header_value"]
    details = ((vector["expect_body"] or {}).get("error") or {}).get("details")
    if details == "Empty Signature" and not vector["w3gate_expect_valid"]:  # v022: w3gate accepts any case
        assert error_of(header) == "Empty Signature"
        return
    if vector["id"] == "v049":
        assert error_of(header) == "Invalid Signature"
        return
    credentials = parse_authorization(header)
    if vector["id"] not in NOT_DECODED_AS_RECORDED:
        token = header.strip().split(" ")[1]
        assert node_ascii(node_base64(token)) == vector["credentials"]
        recorded = vector["credentials"]
        left = recorded.split(":")[0]
        assert credentials.signature == (recorded.split(":")[1] if ":" in recorded else "")
        if "-" in left:
            assert credentials.chain_type == left.split("-")[0]


def test_vector_v017_unpadded() -> None:
    v = BY_ID["v017"]
    assert not v["header_value"].endswith("=")
    c = parse_authorization(v["header_value"])
    assert (c.chain_type, c.address, c.signature) == ("sub", v["address"], v["signature"])


def test_vector_v021_high_bit_byte() -> None:
    v = BY_ID["v021"]
    token = v["header_value"].split(" ")[1]
    assert base64.b64decode(token)[0] == 0xF3  # 's' | 0x80
    c = parse_authorization(v["header_value"])
    assert (c.chain_type, c.address, c.signature) == ("sub", v["address"], v["signature"])


def test_vector_v020_xbearer_and_v024_two_spaces() -> None:
    assert parse_authorization(BY_ID["v020"]["header_value"]).address == BY_ID["v020"]["address"]
    assert parse_authorization(BY_ID["v024"]["header_value"]) == Credentials("sub", "", "")


def test_vector_v026_junk_char_and_v018_whitespace() -> None:
    for vid in ("v026", "v018", "v019"):
        c = parse_authorization(BY_ID[vid]["header_value"])
        assert (c.address, c.signature) == (BY_ID[vid]["address"], BY_ID[vid]["signature"])


def test_vector_v083_near_prefix_and_v087_avalanche_dash() -> None:
    c = parse_authorization(BY_ID["v083"]["header_value"])
    assert (c.chain_type, c.address) == ("near", "ed25519")
    c = parse_authorization(BY_ID["v087"]["header_value"])
    assert (c.chain_type, c.address) == ("ava", "X")
