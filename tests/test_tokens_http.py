"""Bound tokens (docs/tokens.md) made by real wallet libraries, against the service's app (in-process;
``w3gate serve`` on the binary pass and where a command reaches it over HTTP).

The messages are written here as each producer writes them (the ``siwe`` package for Ethereum, Talisman's
SIWS layout, Phantom's Sign-In with Solana layout) and signed with eth-account, substrate-interface and
solders, so w3gate's own producer (``w3gate token``) is checked against them, not against itself.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from helpers import REPO, bearer

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"  # BIP39 test vector
MAX_TTL = 7 * 86400
HOUR = 3600 * 1000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def bound(message: str, signature: bytes) -> str:
    return f"Bearer w3b1.{b64url(message.encode())}.{b64url(signature)}"


def eip4361_layout(family: str, domain: str, address: str, uri: str, version: str, issued: int, expires: int | None,
                   chain_id: str | None = None) -> str:
    """Talisman's SiwsMessage.prepareMessage / Phantom's createSignInMessageText layout."""
    text = f"{domain} wants you to sign in with your {family} account:\n{address}\n\n"
    text += f"Use {domain.split(':')[0]} as my IPFS pinning service.\n\n"
    fields = [f"URI: {uri}", f"Version: {version}"]
    if chain_id:
        fields.append(f"Chain ID: {chain_id}")
    fields += [f"Nonce: {secrets.token_hex(8)}", f"Issued At: {iso(issued)}"]
    if expires is not None:
        fields.append(f"Expiration Time: {iso(expires)}")
    return text + "\n".join(fields)


class Wallet:
    """One key of one chain, signing as that chain's wallets do, with the chain's own library."""

    def __init__(self, chain: str) -> None:
        self.chain = chain
        if chain == "ethereum":
            from eth_account import Account

            self.account = Account.create()
            self.address = self.account.address
        elif chain == "substrate":
            from substrateinterface import Keypair

            self.keypair = Keypair.create_from_uri(f"//{secrets.token_hex(6)}", ss58_format=42)
            self.address = self.keypair.ss58_address
        else:
            from solders.keypair import Keypair as SolKeypair

            self.sol = SolKeypair()
            self.address = str(self.sol.pubkey())

    def sign(self, message: bytes) -> bytes:
        if self.chain == "ethereum":
            from eth_account.messages import encode_defunct

            return bytes(self.account.sign_message(encode_defunct(primitive=message)).signature)
        if self.chain == "substrate":  # the polkadot.js extension's signRaw signs the <Bytes>-wrapped data
            return bytes(self.keypair.sign(b"<Bytes>" + message + b"</Bytes>"))
        return bytes(self.sol.sign_message(message))

    def w3auth(self) -> str:
        if self.chain == "ethereum":
            return bearer(f"eth-{self.address.lower()}:0x{self.sign(self.address.lower().encode()).hex()}")
        if self.chain == "substrate":  # the same key under another SS58 prefix: the same user
            from substrateinterface import Keypair

            other = Keypair(public_key=self.keypair.public_key, ss58_format=0).ss58_address
            return bearer(f"sub-{other}:0x{bytes(self.keypair.sign(other.encode())).hex()}")
        return bearer(f"sol-{self.address}:{self.sign(self.address.encode()).hex()}")

    def message(self, domain: str, uri: str, issued: int, expires: int | None) -> str:
        if self.chain == "ethereum":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from siwe import SiweMessage

            fields = dict(domain=domain, address=self.address, uri=uri, version="1", chain_id=1,
                          nonce=secrets.token_hex(8), issued_at=iso(issued),
                          statement=f"Use {domain.split(':')[0]} as my IPFS pinning service.")
            if expires is not None:
                fields["expiration_time"] = iso(expires)
            return SiweMessage(**fields).prepare_message()
        if self.chain == "substrate":
            return eip4361_layout("Substrate", domain, self.address, uri, "1.0.0", issued, expires)
        return eip4361_layout("Solana", domain, self.address, uri, "1", issued, expires, chain_id="mainnet")

    def token(self, server, *, issued_ago_s: float = 0, ttl_s: float = 3600, domain: str | None = None,
              uri: str | None = None, expires: bool = True, issued_ms: int | None = None) -> str:
        issued = int((time.time() - issued_ago_s) * 1000) if issued_ms is None else issued_ms
        message = self.message(domain or server.base_url.removeprefix("http://"), uri or server.base_url,
                               issued, issued + int(ttl_s * 1000) if expires else None)
        return bound(message, self.sign(message.encode()))


ENV = {"W3GATE_TOKENS_MAX_TTL": str(MAX_TTL), "W3GATE_TOKENS_DEFAULT_TTL": "86400"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    from conftest import database_url_for_test
    from helpers import start_app

    server = start_app(data_dir=tmp_path_factory.mktemp("tokens"), database_url=database_url_for_test(), env=ENV)
    yield server
    server.stop()


def pins(server, token: str) -> httpx.Response:
    return server.get(server.psa_url + "/pins", headers={"Authorization": token}, timeout=30,
                     params={"status": "queued,pinning,pinned,failed"})


def add_pin(server, token: str, name: str) -> httpx.Response:
    return server.post(server.psa_url + "/pins", headers={"Authorization": token},
                      json={"cid": CID, "name": name}, timeout=30)


def refused(response: httpx.Response, details: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["reason"] == "UNAUTHORIZED"
    assert error["details"].startswith(details), error["details"]


def test_auth_params_and_startup_log(service) -> None:
    params = service.get(service.base_url + "/auth/params", timeout=10).json()
    host = service.base_url.removeprefix("http://")
    assert params == {
        "domain": host, "uri": service.base_url, "psa": service.base_url + "/psa",
        "statement": f"Use {host} as my IPFS pinning service.", "default_ttl": 86400, "max_ttl": MAX_TTL,
        "w3auth": True,
    }
    log = service.log_text()
    assert f"make a token at {service.base_url}/ " in log
    assert f"ipfs pin remote service add w3gate {service.base_url}/psa TOKEN" in log


def test_the_statement_names_the_port_unless_it_is_the_schemes_default() -> None:
    """The wallet shows the statement: a service on 127.0.0.1:8080 must not read as the one on port 80."""
    from w3gate.w3auth.bound import policy_for, statement_for

    for url, where in [("http://127.0.0.1:8080", "127.0.0.1:8080"), ("https://pin.example.org", "pin.example.org"),
                       ("https://pin.example.org:443/", "pin.example.org"), ("http://[::1]:8080", "[::1]:8080"),
                       ("http://pin.example.org:80", "pin.example.org")]:
        assert statement_for(policy_for(url, 60)) == f"Use {where} as my IPFS pinning service.", url


@pytest.mark.parametrize("chain", ["ethereum", "substrate", "solana"])
def test_a_bound_token_and_a_w3auth_token_of_one_key_are_one_user(service, chain: str) -> None:
    wallet = Wallet(chain)
    token = wallet.token(service)
    assert add_pin(service, token, f"bound-{chain}").status_code == 202
    for header in (token, wallet.w3auth()):
        listed = pins(service, header)
        assert listed.status_code == 200, listed.text
        assert [p["pin"]["name"] for p in listed.json()["results"]] == [f"bound-{chain}"]
    assert pins(service, Wallet(chain).token(service)).json()["count"] == 0  # another key: another user


@pytest.mark.parametrize("chain", ["ethereum", "substrate", "solana"])
@pytest.mark.parametrize(
    "case, details",
    [
        ("domain", "wrong domain"),
        ("uri", "wrong domain"),
        ("expired", "expired"),
        ("future", "not yet valid"),
        ("ttl", "malformed bound token: the token would last"),
        ("no-expiry", "malformed bound token: Expiration Time is required"),
        ("signature", "bad signature"),
    ],
)
def test_a_bad_bound_token_is_a_401_saying_why(service, chain: str, case: str, details: str) -> None:
    wallet = Wallet(chain)
    kwargs: dict = {
        "domain": {"domain": "pins.example.org"},
        "uri": {"uri": "https://pins.example.org"},
        "expired": {"issued_ago_s": 7200, "ttl_s": 3600},
        "future": {"issued_ago_s": -600},
        "ttl": {"ttl_s": MAX_TTL + 60},
        "no-expiry": {"expires": False},
        "signature": {},
    }[case]
    token = wallet.token(service, **kwargs)
    if case == "signature":  # another key's signature of the same message
        message = base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
        token = bound(message, Wallet(chain).sign(message.encode()))
    refused(pins(service, token), details)
    refused(pins(service, token), details)  # the same answer from the cache


def test_a_domain_matches_in_its_idna_ascii_form_only(start_app_server) -> None:
    """Domains are compared as IDNA ASCII (``xn--``), ASCII letters in any case; a look-alike that Unicode
    case folding would turn into the service's name (KELVIN SIGN for ``k``) is no valid IDNA name: refused."""
    public = "http://pink.b\u00fccher.test"
    server = start_app_server(env={"W3GATE_PUBLIC_URL": public})
    assert server.get(server.base_url + "/auth/params").json()["domain"] == "pink.b\u00fccher.test"
    wallet = Wallet("substrate")
    for domain in ("pink.b\u00fccher.test", "PINK.xn--bcher-kva.test", "pink.xn--bcher-kva.TEST"):
        assert pins(server, wallet.token(server, domain=domain, uri=public)).status_code == 200, domain
    refused(pins(server, wallet.token(server, domain="pin\u212a.b\u00fccher.test", uri=public)),
            "wrong domain: the token's domain 'pin\u212a.b\u00fccher.test' is not a valid IDNA domain name")
    refused(pins(server, wallet.token(server, domain="pinj.b\u00fccher.test", uri=public)), "wrong domain")


def test_a_malformed_bound_token_is_a_401(service) -> None:
    for token in ("w3b1.", "w3b1.!!.xx", "w3b1." + b64url(b"hello") + "." + b64url(b"sig"), "w3b1.a.b.c"):
        refused(pins(service, f"Bearer {token}"), "malformed bound token")


def issued_at(token: str) -> str:
    return base64.urlsafe_b64decode(token.split(".")[1] + "==").decode().split("Issued At: ")[1].split("\n")[0]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


@pytest.mark.parametrize("chain", ["ethereum", "substrate", "solana"])
def test_revoke_refuses_every_token_issued_up_to_now(service, chain: str) -> None:
    """Revoking refuses every token issued before the revocation, the revoking one included, also one dated
    ahead within the clock skew tokens are accepted with; the next token is dated from ``revoked_before``."""
    wallet = Wallet(chain)
    old, plain = wallet.token(service, issued_ago_s=60), wallet.w3auth()
    ahead = wallet.token(service, issued_ago_s=-50)  # signed now, dated 50 s ahead: within the 60 s skew
    for header in (old, plain, ahead):
        assert pins(service, header).status_code == 200
    refused(service.post(service.base_url + "/auth/revoke", headers={"Authorization": plain}), "revoking needs a bound")
    stale = wallet.token(service, issued_ago_s=11 * 60, ttl_s=3600)
    refused(service.post(service.base_url + "/auth/revoke", headers={"Authorization": stale}), "revoking needs a bound")
    fresh = wallet.token(service)
    before = int(time.time() * 1000)
    answer = service.post(service.base_url + "/auth/revoke", headers={"Authorization": fresh}, timeout=10)
    after = int(time.time() * 1000)
    assert answer.status_code == 200, answer.text
    revoked_before = ms(answer.json()["revoked_before"])
    assert before + 60_000 < revoked_before <= after + 60_001  # the service's "now", plus the skew
    for header in (old, plain, ahead, fresh):
        refused(pins(service, header), "revoked")
    refused(pins(service, wallet.token(service)), "revoked")  # signed right after, dated now: within the skew
    nxt = wallet.token(service, issued_ms=revoked_before)
    assert pins(service, nxt).status_code == 200  # dated from revoked_before: the new token
    assert pins(service, Wallet(chain).w3auth()).status_code == 200  # nobody else's tokens


def test_a_revoking_token_dated_ahead_is_refused_and_locks_nothing_out(service) -> None:
    """A revocation dated ahead of the service's clock would refuse the user's next tokens: it is refused."""
    wallet = Wallet("ethereum")
    ahead = wallet.token(service, issued_ago_s=-30)
    assert pins(service, ahead).status_code == 200  # a valid token: within the skew
    refused(service.post(service.base_url + "/auth/revoke", headers={"Authorization": ahead}),
            "revoking needs a bound token issued no later than now")
    assert pins(service, wallet.token(service)).status_code == 200  # nothing was revoked
    assert pins(service, wallet.w3auth()).status_code == 200


def run_token_cli(service, *args: str, secret: str | None = None, secret_file: Path | None = None):
    binary = os.environ.get("W3GATE_TEST_COMMAND", "").split()  # the frozen binary, on the binary pass
    cmd = [*(binary or [sys.executable, "-m", "w3gate"]), "token", "--url", service.base_url, *args]
    if secret_file is not None:
        cmd += ["--secret-file", str(secret_file)]
    env = {k: v for k, v in service.env.items() if not k.startswith("W3GATE_TOKENS")}
    env["W3GATE_TOKENS_MAX_TTL"] = str(MAX_TTL)
    env["W3GATE_TOKENS_DEFAULT_TTL"] = "86400"
    done = subprocess.run(cmd, input=secret or "", capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_w3gate_token_from_a_file_and_from_stdin_is_accepted(service, tmp_path: Path) -> None:
    from eth_account import Account
    from solders.keypair import Keypair as SolKeypair

    Account.enable_unaudited_hdwallet_features()
    metamask = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/0")  # MetaMask's first account
    secret_file = tmp_path / "mnemonic.txt"
    secret_file.write_text(MNEMONIC + "\n")
    out = run_token_cli(service, "--chain", "ethereum", "--name", "mine", secret_file=secret_file)
    assert MNEMONIC not in out
    token = out.split("\n")[1]
    assert f"Token for {metamask.address} (bound to {service.base_url.removeprefix('http://')}, lasts 1 day" in out
    assert f"ipfs pin remote service add mine {service.psa_url} {token}\n" in out
    # the pin line too, in the background: Kubo would otherwise wait for "pinned", i.e. the storage order
    assert out.endswith("\nipfs pin remote add --service=mine --background --name=NAME CID\n")
    assert pins(service, "Bearer " + token).status_code == 200

    sol = SolKeypair()  # solana-keygen's JSON array file, on stdin
    out = run_token_cli(service, "--chain", "solana", "--quiet", "--ttl", "2h", secret=json.dumps(list(bytes(sol))))
    assert add_pin(service, "Bearer " + out.strip(), "from-cli").status_code == 202
    wallet = Wallet("solana")
    wallet.sol, wallet.address = sol, str(sol.pubkey())
    assert [p["pin"]["name"] for p in pins(service, wallet.w3auth()).json()["results"]] == ["from-cli"]



@pytest.mark.slow
def test_w3gate_token_revoke(start_server) -> None:
    """A substrate URI on stdin; --revoke: the wallet's earlier bound and W3Auth tokens are refused (the
    command sends its revocation over HTTP: a process on a socket)."""
    service = start_server(env=ENV)
    from substrateinterface import Keypair

    uri = MNEMONIC + "//hard/soft"
    wallet = Wallet("substrate")
    wallet.keypair = Keypair.create_from_uri(uri, ss58_format=42)  # polkadot.js derives the same key
    wallet.address = wallet.keypair.ss58_address
    earlier, plain = wallet.token(service, issued_ago_s=60), wallet.w3auth()
    assert pins(service, earlier).status_code == 200
    out = run_token_cli(service, "--chain", "substrate", "--revoke", secret=uri)
    assert "every earlier token of" in out
    refused(pins(service, earlier), "revoked")
    refused(pins(service, plain), "revoked")
    assert pins(service, "Bearer " + out.split("\n")[1]).status_code == 200


def test_w3auth_off_refuses_plain_tokens(start_app_server) -> None:
    server = start_app_server(env={"W3GATE_TOKENS_W3AUTH": "false"})
    wallet = Wallet("substrate")
    refused(pins(server, wallet.w3auth()), "plain W3Auth tokens are turned off")
    assert pins(server, wallet.token(server)).status_code == 200
    assert server.get(server.base_url + "/auth/params").json()["w3auth"] is False


@pytest.mark.skipif(not os.environ.get("W3GATE_TEST_POSTGRES_URL"), reason="needs PostgreSQL")
def test_a_revocation_holds_at_another_instance_of_the_database(service, tmp_path: Path) -> None:
    """Two instances on one PostgreSQL database: a revocation made at one is read by the other (which had not
    seen the user within REVOCATION_TTL; one that had reads it again once that has passed)."""
    from helpers import start_server_process

    other = start_server_process(data_dir=tmp_path, database_url=service.env["W3GATE_DATABASE_URL"],
                                 env={"W3GATE_TOKENS_MAX_TTL": str(MAX_TTL), "W3GATE_TOKENS_DEFAULT_TTL": "86400",
                                      "W3GATE_PUBLIC_URL": service.base_url})
    try:
        wallet = Wallet("ethereum")
        earlier = wallet.token(service, issued_ago_s=60)
        fresh = wallet.token(service)
        answer = service.post(service.base_url + "/auth/revoke", headers={"Authorization": fresh})
        assert answer.status_code == 200
        for header in (earlier, wallet.w3auth(), fresh):
            refused(pins(other, header), "revoked")
        assert pins(other, wallet.token(service, issued_ms=ms(answer.json()["revoked_before"]))).status_code == 200
    finally:
        other.stop()
