"""Bound tokens (``w3b1.``): a wallet's signature of an EIP-4361-shaped sign-in message naming this service.

Unlike a W3Auth token (a signature of the bare address, valid at every W3Auth service forever), a bound
token names this service's domain and URI, when it was issued and when it expires, so it is refused
elsewhere, after its expiry, and after its user revoked it. Three message families, one layout (docs/tokens.md):
Sign-In with Ethereum (EIP-4361, parsed by the ``siwe`` package), Sign-In with Substrate (Talisman's
``@talismn/siws``) and Sign-In with Solana (Phantom's ``solana:signIn``). The signature is checked by the
chain that serves the family (``Chain.verify_sign_in``), so the signer's identity is the one its W3Auth
token has: one key, one user.

Token text: ``w3b1.`` + base64url(message) + ``.`` + base64url(signature), both without padding.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
import string
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final
from urllib.parse import urlsplit

import idna

from w3gate.hookspecs import Identity
from w3gate.timestamps import rfc3339_ms
from w3gate.w3auth.token import AuthError

__all__ = [
    "BOUND_PREFIX",
    "ascii_authority",
    "BoundClaims",
    "BoundPolicy",
    "SignIn",
    "check_claims",
    "check_message",
    "revocation_boundary",
    "encode_token",
    "make_message",
    "parse_message",
    "policy_for",
    "split_token",
    "statement_for",
]

BOUND_PREFIX: Final = "w3b1."
MAX_TOKEN_CHARS: Final = 8192
SKEW_MS: Final = 60_000  # an issued-at up to this far in the future is accepted (clock skew)
VERSIONS: Final = {"Substrate": ("1.0.0", "1")}  # Talisman's SIWS writes 1.0.0; EIP-4361 and SIWSol write 1
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
CHAIN_IDS: Final = {"Ethereum": "1"}  # required by EIP-4361 (any value is accepted); optional elsewhere

# details of the 401s (error.reason stays UNAUTHORIZED)
WRONG_DOMAIN: Final = "wrong domain"
EXPIRED: Final = "expired"
REVOKED: Final = "revoked"
NOT_YET_VALID: Final = "not yet valid"
BAD_SIGNATURE: Final = "bad signature"
MALFORMED: Final = "malformed bound token"

_HEADER = re.compile(r"(?P<domain>[^\s/]+) wants you to sign in with your (?P<family>[A-Za-z]+) account:")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)")
_NONCE = re.compile(r"[A-Za-z0-9]{8,}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class SignIn:
    """A parsed sign-in message (the fields w3gate checks)."""

    family: str
    domain: str
    address: str
    uri: str
    version: str
    nonce: str
    issued_at_ms: int
    expires_ms: int | None
    not_before_ms: int | None = None
    chain_id: str | None = None
    statement: str | None = None


@dataclass(frozen=True, slots=True)
class BoundPolicy:
    """What this service requires of a bound token: its ``public_url``'s authority and the longest lifetime."""

    domain: str
    uri: str
    max_ttl_s: int


@dataclass(frozen=True, slots=True)
class BoundClaims:
    """A bound token whose message and signature checked out; its times are checked at every use."""

    identity: Identity
    issued_at_ms: int
    expires_ms: int
    not_before_ms: int | None = None


def _b64url_decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise AuthError(f"{MALFORMED}: not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuthError(f"{MALFORMED}: not base64url") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_token(message: str, signature: bytes) -> str:
    return f"{BOUND_PREFIX}{_b64url(message.encode())}.{_b64url(signature)}"


def split_token(token: str) -> tuple[str, bytes]:
    """The message text and signature bytes of a ``w3b1.`` token."""
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(f"{MALFORMED}: longer than {MAX_TOKEN_CHARS} characters")
    parts = token[len(BOUND_PREFIX):].split(".")
    if len(parts) != 2:
        raise AuthError(f"{MALFORMED}: expected w3b1.<message>.<signature>")
    raw = _b64url_decode(parts[0])
    try:
        message = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthError(f"{MALFORMED}: the message is not UTF-8") from None
    return message, _b64url_decode(parts[1])


def parse_time(text: str, field: str) -> int:
    """RFC 3339 text (timezone required) as milliseconds since the epoch."""
    if not _RFC3339.fullmatch(text):
        raise AuthError(f"{MALFORMED}: {field} {text[:40]!r} is not an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise AuthError(f"{MALFORMED}: {field} {text[:40]!r} is not an RFC 3339 time") from None
    # in whole milliseconds, exactly (timestamp() * 1000 in floating point put some instants 1 ms early)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def parse_message(message: str) -> SignIn:
    """Parse a sign-in message of any family; Ethereum's with the ``siwe`` package (EIP-4361's grammar)."""
    first = message.split("\n", 1)[0]
    header = _HEADER.fullmatch(first)
    if header is None:
        raise AuthError(f"{MALFORMED}: the first line is not '<domain> wants you to sign in with your ... account:'")
    family = header["family"]  # any word: a plugin's chain may sign in too (the authenticator asks the chains)
    return _parse_siwe(message) if family == "Ethereum" else _parse_generic(message, family)


_siwe_lock = threading.Lock()


@functools.cache
def _siwe_message() -> Any:
    """siwe's SiweMessage, imported on first use (it imports web3: 1-3 s) by one thread at a time."""
    with _siwe_lock, warnings.catch_warnings():  # abnf warns about the grammar's redefined core rules
        warnings.simplefilter("ignore")
        from siwe import SiweMessage

        return SiweMessage


def _parse_siwe(message: str) -> SignIn:
    try:
        parsed = _siwe_message().from_message(message, abnf=False)  # its ABNF parser: 25 ms a message
    except Exception as exc:  # siwe raises ValueError and pydantic errors alike
        raise AuthError(f"{MALFORMED}: not an EIP-4361 message ({type(exc).__name__})") from None
    if parsed.version != "1":
        raise AuthError(f"{MALFORMED}: Version must be 1")
    return SignIn(
        family="Ethereum",
        domain=parsed.domain,
        address=parsed.address,
        uri=str(parsed.uri),
        version=parsed.version,
        nonce=parsed.nonce,
        issued_at_ms=parse_time(str(parsed.issued_at), "Issued At"),
        expires_ms=parse_time(str(parsed.expiration_time), "Expiration Time") if parsed.expiration_time else None,
        not_before_ms=parse_time(str(parsed.not_before), "Not Before") if parsed.not_before else None,
        chain_id=str(parsed.chain_id),
        statement=parsed.statement,
    )


def _parse_generic(message: str, family: str) -> SignIn:
    """SIWS (Talisman) and Sign-In with Solana: header, address, [statement,] fields; sections split by a
    blank line as both producers write them."""
    sections = message.split("\n\n")
    head = sections[0].split("\n")
    if len(head) != 2 or not head[1] or len(sections) not in (2, 3):
        raise AuthError(f"{MALFORMED}: expected header, address, optional statement and fields")
    statement = sections[1] if len(sections) == 3 else None
    if statement is not None and (not statement or "\n" in statement):
        raise AuthError(f"{MALFORMED}: the statement must be one non-empty line")
    fields: dict[str, str] = {}
    for line in sections[-1].split("\n"):
        key, sep, value = line.partition(": ")
        if not sep or key in fields:
            raise AuthError(f"{MALFORMED}: bad field line {line[:40]!r}")
        fields[key] = value
    for key in ("URI", "Version", "Nonce", "Issued At"):
        if not fields.get(key):
            raise AuthError(f"{MALFORMED}: {key} is missing")
    if fields["Version"] not in VERSIONS.get(family, ("1",)):
        raise AuthError(f"{MALFORMED}: Version {fields['Version'][:10]!r} is not supported")
    return SignIn(
        family=family,
        domain=_HEADER.fullmatch(head[0])["domain"],  # type: ignore[index]
        address=head[1],
        uri=fields["URI"],
        version=fields["Version"],
        nonce=fields["Nonce"],
        issued_at_ms=parse_time(fields["Issued At"], "Issued At"),
        expires_ms=parse_time(fields["Expiration Time"], "Expiration Time") if "Expiration Time" in fields else None,
        not_before_ms=parse_time(fields["Not Before"], "Not Before") if "Not Before" in fields else None,
        chain_id=fields.get("Chain ID"),
        statement=statement,
    )


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PORT = re.compile(r"(?::[0-9]{1,5})?")


def ascii_authority(authority: str) -> str | None:
    """``host[:port]`` as compared: the host in its IDNA ASCII form (``xn--…``), ASCII letters in lower case;
    None when the host is not a valid IDNA name.

    Only ASCII letters are folded: Unicode case folding would let a look-alike (KELVIN SIGN U+212A) stand
    for ``k``, and a name IDNA 2008 refuses (that one included) is nobody's domain."""
    if authority.startswith("["):  # an IPv6 literal
        host, bracket, port = authority[1:].partition("]")
        if not bracket or not re.fullmatch(r"[0-9A-Fa-f:.]+", host) or not _PORT.fullmatch(port):
            return None
        return f"[{host.lower()}]{port}"
    host, colon, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if not host or not _PORT.fullmatch(colon + port):
        return None
    host = host.translate(_ASCII_LOWER)
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=False).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    return host + colon + port


def check_message(signin: SignIn, policy: BoundPolicy) -> None:
    """The checks that do not depend on the time of use: audience, nonce, an expiry within ``max_ttl``."""
    domain = ascii_authority(signin.domain)
    if domain is None:
        raise AuthError(f"{WRONG_DOMAIN}: the token's domain {signin.domain[:100]!r} is not a valid IDNA domain name")
    if domain != ascii_authority(policy.domain):
        raise AuthError(f"{WRONG_DOMAIN}: the token is for {signin.domain[:100]!r}, this service is {policy.domain!r}")
    if signin.uri != policy.uri and not signin.uri.startswith(policy.uri.rstrip("/") + "/"):
        raise AuthError(f"{WRONG_DOMAIN}: the token's URI {signin.uri[:100]!r} is not under {policy.uri!r}")
    if not _NONCE.fullmatch(signin.nonce):
        raise AuthError(f"{MALFORMED}: Nonce must be at least 8 letters or digits")
    if signin.expires_ms is None:
        raise AuthError(f"{MALFORMED}: Expiration Time is required")
    ttl_ms = signin.expires_ms - signin.issued_at_ms
    if ttl_ms <= 0:
        raise AuthError(f"{MALFORMED}: Expiration Time is not after Issued At")
    if ttl_ms > policy.max_ttl_s * 1000:
        raise AuthError(
            f"{MALFORMED}: the token would last {ttl_ms // 1000} s, this service allows at most "
            f"{policy.max_ttl_s} s (max_ttl)"
        )


def revocation_boundary(revoked_at_ms: int) -> int:
    """The first ``Issued At`` a token may carry after a revocation at ``revoked_at_ms`` (server time).

    A token is accepted up to ``SKEW_MS`` before its ``Issued At``, so a token signed just before the
    revocation may say it was issued up to that much later: every token issued at or before the revocation's
    time plus the skew is refused, whatever its clock said."""
    return revoked_at_ms + SKEW_MS + 1


def check_claims(claims: BoundClaims, now_ms: int, revoked_before_ms: int | None) -> None:
    """The checks made at every use: not before its time, not expired, not revoked."""
    if claims.issued_at_ms > now_ms + SKEW_MS:
        raise AuthError(f"{NOT_YET_VALID}: issued at {rfc3339_ms(claims.issued_at_ms)}, in the future")
    if claims.not_before_ms is not None and claims.not_before_ms > now_ms + SKEW_MS:
        raise AuthError(f"{NOT_YET_VALID}: valid from {rfc3339_ms(claims.not_before_ms)}")
    if now_ms >= claims.expires_ms:
        raise AuthError(f"{EXPIRED}: at {rfc3339_ms(claims.expires_ms)}")
    if revoked_before_ms is not None and claims.issued_at_ms < revoked_before_ms:
        raise AuthError(
            f"{REVOKED}: issued at {rfc3339_ms(claims.issued_at_ms)}, before the user revoked their tokens "
            f"({rfc3339_ms(revoked_before_ms)})"
        )


def policy_for(public_url: str, max_ttl_s: int) -> BoundPolicy:
    """The bound-token audience of a service reached at ``public_url`` (host[:port] and the URL itself)."""
    return BoundPolicy(domain=urlsplit(public_url).netloc, uri=public_url.rstrip("/"), max_ttl_s=max_ttl_s)


def statement_for(policy: BoundPolicy) -> str:
    """What the wallet shows the user: the service's host, and its port unless the scheme's default."""
    url = urlsplit(policy.uri)
    where = url.hostname or policy.domain
    if url.port is not None and url.port != DEFAULT_PORTS.get(url.scheme):
        where = f"[{where}]:{url.port}" if ":" in where else f"{where}:{url.port}"
    return f"Use {where} as my IPFS pinning service."


def new_nonce() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))


def make_message(
    family: str, *, domain: str, address: str, uri: str, issued_at_ms: int, expires_ms: int,
    statement: str | None = None, chain_id: str | None = None, nonce: str | None = None,
) -> str:
    """A sign-in message as w3gate's producers write it (``w3gate token``, the page, the tests)."""
    lines = [f"{domain} wants you to sign in with your {family} account:", address, ""]
    if statement:
        lines += [statement, ""]
    elif family == "Ethereum":  # EIP-4361 keeps the statement's (empty) line; SIWS and SIWSol drop it
        lines.append("")
    lines += [f"URI: {uri}", f"Version: {VERSIONS.get(family, ('1',))[0]}"]
    chain_id = chain_id or CHAIN_IDS.get(family)
    if chain_id:
        lines.append(f"Chain ID: {chain_id}")
    lines += [
        f"Nonce: {nonce or new_nonce()}",
        f"Issued At: {rfc3339_ms(issued_at_ms)}",
        f"Expiration Time: {rfc3339_ms(expires_ms)}",
    ]
    return "\n".join(lines)
