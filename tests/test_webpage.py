"""The web page at ``/`` in a real browser (Debian's Chromium driven by Playwright), against a real service.

Test wallets are injected into the page as the real ones inject themselves (an EIP-1193 ``window.ethereum``, a
polkadot ``injectedWeb3`` extension, a Phantom-like ``window.solana``); each hands the bytes it is asked to sign
to Python, where a real key signs them as that wallet would (eth-account personal_sign, substrate-interface
sr25519 over ``<Bytes>``-wrapped data, solders ed25519). The token the page shows is then used directly against
the API. Bound tokens are made from ``GET /auth/params`` (docs/tokens.md).

``W3GATE_SCREENSHOTS=docs/img`` also saves a screenshot of each view there (the README's pictures).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import database_url_for_test
from helpers import Server, bearer, start_server_process
from multiformats import CID, multihash

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM}")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("W3GATE_SCREENSHOTS")
ACCOUNT_WORD = {"ethereum": "Ethereum", "substrate": "Substrate", "solana": "Solana"}
BUTTON = {"ethereum": "#wallet-ethereum", "substrate": "#wallet-polkadot", "solana": "#wallet-solana"}


class Wallets:
    """One key per chain, signing what the page's wallet objects forward, as each wallet signs."""

    def __init__(self) -> None:
        from eth_account import Account
        from solders.keypair import Keypair as SolanaKeypair
        from substrateinterface import Keypair

        self.eth = Account.create()
        self.sub = Keypair.create_from_mnemonic(Keypair.generate_mnemonic(), ss58_format=42)
        self.sol = SolanaKeypair()
        self.address = {"ethereum": self.eth.address, "substrate": self.sub.ss58_address,
                        "solana": str(self.sol.pubkey())}
        self.signed: list[tuple[str, bytes]] = []

    def sign(self, chain: str, data_hex: str) -> str:
        from eth_account import Account
        from eth_account.messages import encode_defunct

        data = bytes.fromhex(data_hex.removeprefix("0x"))
        self.signed.append((chain, data))
        if chain == "ethereum":  # personal_sign: EIP-191 of the bytes
            return "0x" + Account.sign_message(encode_defunct(primitive=data), self.eth.key).signature.hex()
        if chain == "substrate":  # the extensions' signRaw wraps the bytes
            wrapped = data if data.startswith(b"<Bytes>") else b"<Bytes>" + data + b"</Bytes>"
            return "0x" + self.sub.sign(wrapped).hex()
        return bytes(self.sol.sign_message(data)).hex()

    def w3auth(self, chain: str) -> str:
        """A plain W3Auth token made here, without the page: the same key must be the same user."""
        address = self.address[chain]
        sig = self.sign(chain, address.encode().hex())
        prefix = {"ethereum": "eth", "substrate": "sub", "solana": "sol"}[chain]
        return bearer(f"{prefix}-{address}:{sig}")

    def init_script(self) -> str:
        return "const A = %s;\n" % json.dumps(self.address) + """
const sign = (chain, hex) => window.__w3gateTestSign(chain, hex);
const toHex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
const fromHex = (h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
window.ethereum = { isMetaMask: true, request: async ({ method, params }) => {
  if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [A.ethereum.toLowerCase()];
  if (method === 'eth_chainId') return '0x1';
  if (method === 'personal_sign') {
    if (params[1].toLowerCase() !== A.ethereum.toLowerCase()) throw new Error('not this wallet\\'s account');
    return sign('ethereum', params[0]);
  }
  throw Object.assign(new Error('unsupported ' + method), { code: 4200 });
} };
const account = { address: A.substrate, name: 'test key', type: 'sr25519' };
window.injectedWeb3 = { 'polkadot-js': { version: 'test', enable: async () => ({
  accounts: { get: async () => [account], subscribe: (cb) => { cb([account]); return () => {}; } },
  signer: { signRaw: async ({ data }) => ({ id: 1, signature: await sign('substrate', data) }) },
}) } };
const publicKey = { toString: () => A.solana, toBase58: () => A.solana };
const solana = { isPhantom: true, publicKey: null,
  connect: async () => { solana.publicKey = publicKey; return { publicKey }; },
  signMessage: async (message) => ({ signature: fromHex(await sign('solana', toHex(message))), publicKey }) };
window.phantom = { solana };
window.solana = solana;
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server_process(data_dir=tmp_path_factory.mktemp("web"), database_url=database_url_for_test())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def params(server: Server) -> dict[str, Any] | None:
    """``GET /auth/params``, or None while the server has none (before branch tokens is merged)."""
    resp = httpx.get(server.base_url + "/auth/params", timeout=10)
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def needs_params(params: dict[str, Any] | None) -> dict[str, Any]:
    if params is None:
        pytest.fail("GET /auth/params is 404: the page cannot make bound tokens")
    return params


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def wallets() -> Wallets:
    return Wallets()


@pytest.fixture
def page(browser: Any, server: Server, wallets: Wallets) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 760},
                                  permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    context.expose_function("__w3gateTestSign", wallets.sign)
    context.add_init_script(wallets.init_script())
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    response = pg.goto(server.base_url + "/")
    assert response is not None and response.status == 200, "no page at /"
    pg.wait_for_selector("body[data-ready=true]")
    yield pg
    context.close()
    assert not errors, errors


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def make_token(page: Any, chain: str, kind: str = "w3auth", ttl: str | None = None) -> str:
    if page.locator("#kind-w3auth").is_enabled():
        page.check(f"#kind-{kind}")
    if ttl is not None:
        page.select_option("#ttl", ttl)
    page.click(BUTTON[chain])
    page.wait_for_selector("#token-box:visible")
    return page.inner_text("#token").strip()


def new_cids(n: int, tag: str) -> list[str]:
    return [str(CID("base32", 1, "raw", multihash.digest(f"{tag}-{i}".encode(), "sha2-256"))) for i in range(n)]


def assert_same_user(server: Server, page_token: str, other_header: str) -> None:
    """A pin made with the page's token is listed with a token made in Python for the same key."""
    cid = new_cids(1, page_token[-12:])[0]
    with server.client("Bearer " + page_token) as api:
        assert api.post("/pins", json={"cid": cid}).status_code == 202
    with server.client(other_header) as api:
        listed = api.get("/pins", params={"cid": cid, "status": "queued,pinning,pinned,failed"})
        assert listed.status_code == 200, listed.text
        assert [r["pin"]["cid"] for r in listed.json()["results"]] == [cid]


def test_page_and_its_files_are_served(server: Server) -> None:
    resp = httpx.get(server.base_url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    files = re.findall(r'(?:src|href)="(web/[^"]+)"', resp.text)  # relative: w3gate may sit under a path
    assert sorted(files) == ["web/app.js", "web/style.css"]
    app = httpx.get(server.base_url + "/web/app.js", timeout=10)
    assert app.headers["content-type"].startswith("text/javascript")
    for chunk in set(re.findall(r"chunk-[A-Z0-9]+\.js", app.text)):  # the lazily loaded parts
        assert httpx.get(f"{server.base_url}/web/{chunk}", timeout=10).status_code == 200
    assert httpx.get(server.base_url + "/web/style.css", timeout=10).headers["content-type"].startswith("text/css")
    for missing in ("/web/nope.js", "/web/..%2Fapi%2Fapp.py", "/web/"):
        resp = httpx.get(server.base_url + missing, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["reason"] == "NOT_FOUND"


@pytest.mark.parametrize("chain", ["substrate", "ethereum", "solana"])
def test_w3auth_token_from_each_wallet(server: Server, page: Any, wallets: Wallets,
                                       params: dict[str, Any] | None, chain: str) -> None:
    if params is not None and not params["w3auth"]:
        pytest.skip("this server refuses plain W3Auth tokens ([tokens] w3auth = false)")
    token = make_token(page, chain, "w3auth")
    chain_type, _, rest = base64.b64decode(token).decode().partition("-")
    assert chain_type == {"ethereum": "eth", "substrate": "sub", "solana": "sol"}[chain]
    assert rest.partition(":")[0] == wallets.address[chain]
    assert "never expires" in page.inner_text("#token-summary")
    psa = params["psa"] if params else server.psa_url
    kubo = page.inner_text("#kubo").strip()
    assert kubo == f"ipfs pin remote service add w3gate {psa} {token}"
    page.click("button[data-copy=token]")
    page.wait_for_selector("#copy-status:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == token
    assert_same_user(server, token, wallets.w3auth(chain))


@pytest.mark.parametrize("chain", ["substrate", "ethereum", "solana"])
def test_bound_token_from_each_wallet(needs_params: dict[str, Any], server: Server, page: Any, wallets: Wallets,
                                      chain: str) -> None:
    assert page.locator("#kind-bound").is_checked()  # bound is the default, for the server's default lifetime
    assert page.input_value("#ttl") == str(needs_params["default_ttl"])
    token = make_token(page, chain, "bound", ttl="3600")
    prefix, message_b64, _ = token.split(".")
    assert prefix == "w3b1"
    message = base64.urlsafe_b64decode(message_b64 + "=" * (-len(message_b64) % 4)).decode()
    assert (chain, message.encode()) in wallets.signed  # the wallet signed exactly the message in the token
    lines = message.split("\n")
    assert lines[0] == f"{needs_params['domain']} wants you to sign in with your {ACCOUNT_WORD[chain]} account:"
    assert lines[1] == wallets.address[chain]
    assert f"URI: {needs_params['uri']}" in lines
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    lifetime = datetime.fromisoformat(fields["Expiration Time"]) - datetime.fromisoformat(fields["Issued At"])
    assert lifetime.total_seconds() == 3600
    assert "lasts 1 hour" in page.inner_text("#token-summary")
    assert_same_user(server, token, wallets.w3auth(chain))


def test_revoke_all_my_tokens(needs_params: dict[str, Any], server: Server, page: Any, wallets: Wallets) -> None:
    old = wallets.w3auth("substrate")
    token = make_token(page, "substrate", "bound")
    with server.client(old) as api:
        assert api.get("/pins").status_code == 200
    page.click("#revoke")
    page.wait_for_selector("#revoke-status:has-text('the token above is the new one')")
    new = page.inner_text("#token").strip()
    assert new != token
    for header in (old, "Bearer " + token):  # the token that revoked was issued before the revocation too
        with server.client(header) as api:
            assert api.get("/pins").status_code == 401
    with server.client("Bearer " + new) as api:  # signed after it, dated from its revoked_before
        assert api.get("/pins").status_code == 200


def test_my_pins(server: Server, page: Any, wallets: Wallets) -> None:
    shot(page, "connect")
    token = make_token(page, "ethereum", "bound" if page.locator("#kind-bound").is_enabled() else "w3auth")
    shot(page, "token")
    cids = new_cids(13, "my-pins")
    with server.client("Bearer " + token) as api:
        for i, cid in enumerate(cids[:12]):
            assert api.post("/pins", json={"cid": cid, "name": f"file-{i:02}"}).status_code == 202
    page.click("nav button[data-view=pins]")
    page.fill("#add-cid", cids[12])
    page.fill("#add-name", "via-page")
    page.click("#add-form button[type=submit]")
    page.wait_for_selector("#add-status:has-text('Added')")

    def names() -> list[str]:
        return page.locator("#pins-body tr td:nth-child(2)").all_inner_texts()

    def apply(expect: str) -> None:
        page.click("#filters button[type=submit]")
        page.wait_for_selector(f"#pins-status:has-text('{expect}')")

    # the default list shows queued pins too (no ordering account here), newest first, 10 a page
    page.wait_for_selector("#pins-status:has-text('Showing 1–10 of 13')")
    assert names() == ["via-page"] + [f"file-{i:02}" for i in range(11, 2, -1)]
    assert set(page.locator("#pins-body td.status").all_inner_texts()) == {"queued"}
    assert page.locator("#pins-body tr").first.locator("td.cid").inner_text() == cids[12]
    shot(page, "pins")
    page.click("#older")  # the spec's `before` cursor: the last row's `created`
    page.wait_for_selector("#pins-status:has-text('Showing 11–13 of 13')")
    assert names() == ["file-02", "file-01", "file-00"]
    assert page.locator("#older").is_disabled()
    page.click("#newer")
    page.wait_for_selector("#pins-status:has-text('Showing 1–10 of 13')")

    page.fill("#filter-name", "FILE-1")  # ipartial
    apply("Showing 1–2 of 2")
    assert names() == ["file-11", "file-10"]
    page.fill("#filter-name", "")
    page.fill("#filter-cid", cids[5])
    apply("Showing 1–1 of 1")
    assert names() == ["file-05"]
    page.fill("#filter-cid", "")
    page.uncheck("#status-queued")
    apply("No pins match.")
    page.check("#status-queued")
    page.fill("#filter-after", "2000-01-01T00:00:00")
    apply("Showing 1–10 of 13")
    page.fill("#filter-before", "2000-01-02T00:00:00")
    apply("No pins match.")
    page.fill("#filter-after", "")
    page.fill("#filter-before", "")
    page.select_option("#filter-limit", "20")
    apply("Showing 1–13 of 13")

    row = page.locator("#pins-body tr", has_text="via-page")
    requestid = row.get_attribute("data-requestid")
    row.locator("button.remove").click()
    page.wait_for_selector("#pins-status:has-text('Showing 1–12 of 12')")
    assert "via-page" not in names()
    with server.client("Bearer " + token) as api:
        assert api.get(f"/pins/{requestid}").status_code == 404


def test_a_pasted_token_from_w3gate_token(server: Server, page: Any, params: dict[str, Any] | None) -> None:
    """No wallet extension: the page shows the ``w3gate token`` command for this service, and takes a token
    pasted from it (made by w3gate's own signer, for a new substrate key): checked with the service, then
    the page's token exactly as a wallet-made one, so My pins lists that key's pins."""
    import subprocess
    import sys

    from substrateinterface import Keypair

    uri = params["uri"] if params else server.base_url
    assert page.inner_text("#cli").strip() == f"w3gate token --chain CHAIN --url {uri}"
    mnemonic = Keypair.generate_mnemonic()
    address = Keypair.create_from_mnemonic(mnemonic, ss58_format=66).ss58_address  # w3gate token: Crust's
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    made = subprocess.run([*command, "token", "--chain", "substrate", "--quiet", "--url", server.base_url],
                          input=mnemonic, capture_output=True, text=True, env=server.env, timeout=120)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    cids = new_cids(3, "pasted")
    with server.client("Bearer " + token) as api:
        for i, cid in enumerate(cids):
            assert api.post("/pins", json={"cid": cid, "name": f"from-cli-{i}"}).status_code == 202

    page.fill("#paste-token", "not a token")
    page.click("#use-token")
    page.wait_for_selector("#paste-status.error:has-text('This is not a token')")
    forged = base64.b64encode(f"sub-{address}:0x{'ab' * 64}".encode()).decode()
    page.fill("#paste-token", forged)
    page.click("#use-token")
    page.wait_for_selector("#paste-status.error:has-text('The service refuses this token')")
    assert page.evaluate("sessionStorage.getItem('w3gate.token')") is None  # a refused token is not kept

    page.fill("#paste-token", f"Bearer {token}\n")  # as copied from a header, with its line end
    page.click("#use-token")
    page.wait_for_selector("#token-box:visible")
    assert page.inner_text("#token").strip() == token
    assert f"substrate account {address}" in page.inner_text("#token-summary")
    assert json.loads(page.evaluate("sessionStorage.getItem('w3gate.token')"))["text"] == token
    page.click("nav button[data-view=pins]")
    page.wait_for_selector("#pins-status:has-text('Showing 1–3 of 3')")
    names = page.locator("#pins-body tr td:nth-child(2)").all_inner_texts()
    assert names == ["from-cli-2", "from-cli-1", "from-cli-0"]
    shot(page, "pasted-token")


def test_my_pins_show_where_each_pin_is(server: Server, page: Any) -> None:
    """With an IPFS node a pin's ``info`` carries ``status_details`` (where it is: fetching, waiting for providers,
    replicas n of m) and ``dag_size`` once measured: the page shows both in the row. The service here has no node,
    so the list's answer is given those fields on its way to the page (the page's rendering is what is tested;
    tests/test_ipfs_node.py checks the service writes them)."""
    from helpers import substrate_token

    token = substrate_token("//PageDetails").removeprefix("Bearer ")
    cid = new_cids(1, "details")[0]
    with server.client("Bearer " + token) as api:
        assert api.post("/pins", json={"cid": cid, "name": "measured"}).status_code == 202

    def with_details(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        for result in body.get("results", []):
            result["info"] = {**result.get("info", {}), "status_details": "waiting for providers",
                              "dag_size": "3000609"}
        route.fulfill(response=answer, json=body)

    page.route(re.compile(r".*/psa/pins\?.*"), with_details)
    page.fill("#paste-token", token)
    page.click("#use-token")
    page.wait_for_selector("#token-box:visible")
    page.click("nav button[data-view=pins]")
    row = page.locator("#pins-body tr", has_text="measured")
    row.wait_for()
    assert row.locator("td.status small.details").inner_text() == "waiting for providers"
    assert row.locator("td.size").inner_text() == "3.0 MB"
