"""``w3gate token``: a token from a wallet's secret, and the Kubo line that uses it; ``--revoke``.

The secret is read from a file or standard input, never from the command line (where ``ps`` and shell
history would show it), and is never printed. Bound tokens by default (docs/tokens.md): they name this
service and expire; ``--w3auth`` makes a plain W3Auth token instead (any W3Auth service accepts it, forever).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import re
import sys
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from w3gate.config import Settings
from w3gate.timestamps import rfc3339_ms
from w3gate.w3auth.bound import encode_token, make_message, parse_time, policy_for, statement_for
from w3gate.w3auth.token import AuthError

EXIT_USAGE = 2
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
REVOKE_PROOF_TTL = 600  # seconds: the token that revokes is refused by its own revocation, so it need not last


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("token", help="make a token from a wallet secret (file or stdin) and print the Kubo line")
    p.add_argument("--chain", required=True, help="substrate, ethereum, solana, or a plugin's chain")
    p.add_argument("--secret-file", type=Path,
                   help="file holding the mnemonic, seed, URI or private key (default: standard input)")
    p.add_argument("--ttl", help="bound token lifetime: seconds, or 12h, 30d (default: [tokens] default_ttl)")
    p.add_argument("--w3auth", action="store_true", help="make a plain W3Auth token (no expiry, any service)")
    p.add_argument("--revoke", action="store_true",
                   help="refuse every earlier token of this key at the service; prints the new token")
    p.add_argument("--url", help="the service's public URL (default: public_url, else http://HOST:PORT)")
    p.add_argument("--name", default="w3gate", help="the service name in the Kubo line (default: w3gate)")
    p.add_argument("--quiet", action="store_true", help="print only the token")
    return p


def parse_duration(text: str) -> int:
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"--ttl {text!r}: expected seconds or a number with s, m, h or d")
    return int(match[1]) * _UNITS[match[2]]


def read_secret(path: Path | None) -> str:
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    if sys.stdin.isatty():
        return getpass.getpass("secret (not echoed): ").strip()
    return sys.stdin.read().strip()


def days(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds != 86400 else ''}"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from w3gate.plugins import load_signers

    origins: dict[str, str] = {}
    signers = load_signers(plugin_dir=settings.plugin_dir, settings=settings.chains, wanted=args.chain,
                           origins=origins)
    signer = signers.get(args.chain.strip().lower())
    if signer is None:
        print(f"w3gate token: no plugin makes tokens for chain {args.chain!r} (a chain's plugin may verify its "
              f"tokens without making them). Plugins that do: {_signing_plugins(origins)}", file=sys.stderr)
        return EXIT_USAGE
    public = (args.url or settings.public_base).rstrip("/")
    try:
        ttl = parse_duration(args.ttl) if args.ttl else settings.tokens.default_ttl
        key = signer.load(read_secret(args.secret_file))
    except (OSError, ValueError) as exc:
        print(f"w3gate token: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.w3auth and not args.revoke:
        token = base64.b64encode(key.w3auth_credentials().encode()).decode()
        note = "plain W3Auth token: accepted by every W3Auth service, never expires (revocable here only)"
    else:
        family = signer.sign_in
        if family is None:
            print(f"w3gate token: chain {signer.name} makes W3Auth tokens only: add --w3auth", file=sys.stderr)
            return EXIT_USAGE
        policy = policy_for(public, settings.tokens.max_ttl)

        def signed(issued_ms: int, ttl_s: int) -> str:
            message = make_message(
                family, domain=policy.domain, address=key.address, uri=policy.uri,
                issued_at_ms=issued_ms, expires_ms=issued_ms + ttl_s * 1000, statement=statement_for(policy),
            )
            return encode_token(message, key.sign(message.encode()))

        now_ms = int(time.time() * 1000)
        if args.revoke:
            # the revocation refuses every token issued up to the service's "now" (itself included), so the
            # new token is signed after it, dated from the first instant the revocation lets through
            try:
                proof = signed(min(now_ms, _service_now_ms(public)), REVOKE_PROOF_TTL)
                answer = _post_revoke(public, proof)
                now_ms = max(int(time.time() * 1000), parse_time(str(answer["revoked_before"]), "revoked_before"))
            except (OSError, ValueError, KeyError, AuthError) as exc:
                print(f"w3gate token: revoking failed: {exc}", file=sys.stderr)
                return 1
        token = signed(now_ms, ttl)
        note = f"bound to {policy.domain}, lasts {days(ttl)}: until {rfc3339_ms(now_ms + ttl * 1000)}"
        if args.revoke:
            note += f"; every earlier token of {key.address} is refused (issued before {answer['revoked_before']})"
    if args.quiet:
        print(token)
        return 0
    print(f"Token for {key.address} ({note}):\n{token}\n")
    print(f"Add it to Kubo:\nipfs pin remote service add {args.name} {public}/psa {token}")
    # --background: Kubo otherwise waits until the pin is "pinned", which takes as long as the storage
    # order (or forever where ordering is off); the pin request stays queued here either way
    print(f"and pin with it (--background: do not wait for the storage order):\n"
          f"ipfs pin remote add --service={args.name} --background --name=NAME CID")
    return 0


def _signing_plugins(origins: dict[str, str]) -> str:
    """``built-in (ethereum, solana, substrate); near (near)``: each plugin that signs, with its chains."""
    by_plugin: dict[str, list[str]] = {}
    for chain, plugin in origins.items():
        by_plugin.setdefault(plugin, []).append(chain)
    return "; ".join(f"{plugin} ({', '.join(sorted(chains))})" for plugin, chains in by_plugin.items()) or "none"


def _service_now_ms(public: str) -> int:
    """The service's clock, from the ``Date`` of its ``/auth/params`` answer (whole seconds, so never ahead of
    it): a revoking token must not be dated ahead of the service's clock, whatever this machine's says."""
    with urllib.request.urlopen(f"{public}/auth/params", timeout=30) as response:  # noqa: S310 - the operator's URL
        date = response.headers.get("Date")
    if not date:
        return int(time.time() * 1000)
    return int(parsedate_to_datetime(date).timestamp()) * 1000


def _post_revoke(public: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{public}/auth/revoke", data=b"", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the operator's URL
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            details = json.loads(exc.read())["error"]["details"]
        except Exception:  # noqa: BLE001 - not a Failure body
            details = exc.reason
        raise ValueError(f"{public}/auth/revoke answered {exc.code}: {details}") from None
