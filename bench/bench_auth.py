"""How fast tokens are authenticated: uncached verifications per key type, and cache hits (W3Auth and bound).

Run: python bench/bench_auth.py [seconds-per-case]. Prints figures; it is not a test. Tokens are made
here with real keys (substrate-interface, eth-account, coincurve, solders); every chain loaded by
``load_chains()`` is used exactly as the server uses it, through ``Authenticator.authenticate_sync``.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import time
from collections.abc import Callable

import coincurve
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak
from scalecodec.utils.ss58 import ss58_encode
from solders.keypair import Keypair as SolKeypair
from substrateinterface import Keypair, KeypairType

from w3gate.plugins import load_chains
from w3gate.w3auth.authenticator import Authenticator
from w3gate.w3auth.bound import BoundPolicy, encode_token, make_message

POLICY = BoundPolicy("pin.example.org", "https://pin.example.org", 86400)


def bearer(credentials: str) -> str:
    return "Bearer " + base64.b64encode(credentials.encode()).decode()


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def seed(label: str, n: int) -> bytes:
    return hashlib.sha256(f"bench-{label}-{n}".encode()).digest()


def sub_token(crypto_type: int, n: int) -> str:
    kp = Keypair.create_from_seed("0x" + seed(f"sub{crypto_type}", n).hex(), ss58_format=66,
                                  crypto_type=crypto_type)
    return bearer(f"sub-{kp.ss58_address}:0x{kp.sign(kp.ss58_address).hex()}")


def sub_ecdsa_token(n: int) -> str:
    key = coincurve.PrivateKey(seed("ecdsa", n))
    address = ss58_encode(blake2_256(key.public_key.format()), 66)
    return bearer(f"sub-{address}:0x{key.sign_recoverable(address.encode(), hasher=blake2_256).hex()}")


def talisman_token(n: int) -> str:
    acct = Account.from_key(seed("talisman", n))
    signed = Account.unsafe_sign_hash(keccak(acct.address.encode()), acct.key)
    sig = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v - 27])
    return bearer(f"sub-{acct.address}:0x{sig.hex()}")


def eth_text_token(n: int) -> str:
    acct = Account.from_key(seed("eth", n))
    sig = Account.sign_message(encode_defunct(text=acct.address), acct.key).signature
    return bearer(f"eth-{acct.address}:0x{bytes(sig).hex()}")


def eth_bytes_token(n: int) -> str:  # the 2nd attempt: costs two recoveries
    acct = Account.from_key(seed("ethb", n))
    sig = Account.sign_message(encode_defunct(primitive=bytes.fromhex(acct.address[2:])), acct.key).signature
    return bearer(f"eth-{acct.address}:0x{bytes(sig).hex()}")


def sol_token(n: int) -> str:
    kp = SolKeypair.from_seed(seed("sol", n))
    address = str(kp.pubkey())
    return bearer(f"sol-{address}:{bytes(kp.sign_message(address.encode())).hex()}")


def bound_token(family: str, address: str, sign: Callable[[bytes], bytes], n: int) -> str:
    now = int(time.time() * 1000)
    message = make_message(family, domain=POLICY.domain, address=address, uri=POLICY.uri, issued_at_ms=now - n,
                           expires_ms=now + 3_600_000, statement="Use pin.example.org as my IPFS pinning service.")
    return "Bearer " + encode_token(message, sign(message.encode()))


def siwe_token(n: int) -> str:
    acct = Account.from_key(seed("siwe", n))
    return bound_token("Ethereum", acct.address,
                       lambda m: bytes(acct.sign_message(encode_defunct(primitive=m)).signature), n)


def siws_token(n: int) -> str:
    kp = Keypair.create_from_seed("0x" + seed("siws", n).hex(), ss58_format=42)
    return bound_token("Substrate", kp.ss58_address, lambda m: bytes(kp.sign(m)), n)


def siwsol_token(n: int) -> str:
    kp = SolKeypair.from_seed(seed("siwsol", n))
    return bound_token("Solana", str(kp.pubkey()), lambda m: bytes(kp.sign_message(m)), n)


CASES: dict[str, Callable[[int], str]] = {
    "substrate sr25519": lambda n: sub_token(KeypairType.SR25519, n),
    "substrate ed25519": lambda n: sub_token(KeypairType.ED25519, n),
    "substrate ecdsa": sub_ecdsa_token,
    "substrate talisman-eth": talisman_token,
    "ethereum (text)": eth_text_token,
    "ethereum (bytes)": eth_bytes_token,
    "solana": sol_token,
    "bound ethereum (SIWE)": siwe_token,
    "bound substrate (SIWS)": siws_token,
    "bound solana (SIWSol)": siwsol_token,
}


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        count += 50
    return count / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    registry = load_chains()
    uncached = Authenticator(registry, cache_size=0, negative_cache_size=0, bound_policy=POLICY)
    cached = Authenticator(registry, bound_policy=POLICY)
    print(f"{'case':28} {'uncached tokens/s':>18} {'cached hits/s':>14}")
    for name, make in CASES.items():
        tokens = [make(n) for n in range(8)]
        for t in tokens:  # every token must really verify
            uncached.authenticate_sync(t)
        cycle = iter(range(1 << 62))
        verify_rate = rate(lambda t=tokens, c=cycle: uncached.authenticate_sync(t[next(c) % 8]), seconds)
        hit_rate = rate(lambda t=tokens: cached.authenticate_sync(t[0]), seconds)
        print(f"{name:28} {verify_rate:18,.0f} {hit_rate:14,.0f}")


if __name__ == "__main__":
    main()
