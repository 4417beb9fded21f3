"""The plugin contract: how a chain's wallet signatures are taught to w3gate, and who may pin.

This module is public API, versioned by ``HOOKSPEC_VERSION``. A plugin is a module (found through the
``w3gate`` entry-point group, or in the operator's plugin directory) with a ``@hookimpl`` function
``w3gate_chains`` returning :class:`Chain` objects, optionally ``w3gate_signers`` returning :class:`Signer`
objects (which teach ``w3gate token`` to make that chain's tokens from a secret), and/or ``w3gate_admit``
accepting or refusing pin requests. The built-in chains (substrate, ethereum, solana) register through the
chains and signers hooks, and the built-in limits (``[limits]``, ``[access]``, per-user settings) through the
admission hook, exactly as a third-party plugin does.

Compatibility: within one major ``HOOKSPEC_VERSION`` fields and hooks are only ever added, never removed
or changed in meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pluggy

# 1.1: w3gate_signers, Signer, Chain.sign_in/verify_sign_in; 1.2: w3gate_admit (PinRequest, Refusal, Quota),
# Chain.identity_of; 1.3: Identity.aliases
HOOKSPEC_VERSION = "1.3"
PROJECT_NAME = "w3gate"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A W3Auth token, split the way Crust's handler splits it (FORMAT.md section 2.1).

    ``chain_type`` is the raw text before the first ``-`` (not yet lower-cased), ``address`` the second
    piece, ``extra`` the pieces after it (Elrond/TON's signed message, xx's fields), ``signature`` the
    text after the first ``:``. Nothing is validated yet: that is the verifier's job.
    """

    chain_type: str
    address: str
    signature: str
    extra: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed: a canonical key, so that one key is one user whatever form its token takes.

    ``chain`` names the key's family (``"substrate"``, ``"ethereum"``, ...), ``account`` is its canonical
    text (e.g. the hex account id for substrate, the lower-case address for ethereum). Two tokens that
    yield equal ``(chain, account)`` belong to the same user: a secp256k1 key is the ``ethereum`` identity of
    its address whether it signs as ``eth-`` or as a Substrate ECDSA key. ``address`` is the address as the token gave
    it, for display only.
    """

    chain: str
    account: str
    address: str = ""
    # (1.3) other user keys the same key is also known by, e.g. a secp256k1 key's Substrate ECDSA account id
    # (``substrate:0x<blake2-256 of the compressed key>``) beside its ``ethereum:`` address: the operator's
    # lists and settings naming them apply to this user, and what was stored under them becomes this user's
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def user_key(self) -> str:
        return f"{self.chain}:{self.account}"


class InvalidSignature(Exception):
    """Raised (or ``None`` returned) by a verifier when the token does not prove the address.

    The message is for the operator's debug log only; the client always sees ``Invalid Signature``.
    """


@runtime_checkable
class Chain(Protocol):
    """A chain's signature verifier.

    ``name``: the canonical chain name, also the ``Identity.chain`` it returns.
    ``aliases``: the lower-case chain-type strings of a token it answers to (``name`` included).
    ``verify``: checks the signature and returns the signer's :class:`Identity`, or ``None`` (or raises
    :class:`InvalidSignature`) when it does not verify. It is called in a worker thread, so it may block
    (e.g. on a network look-up) but must be thread-safe. Any other exception also counts as invalid.

    Optional (1.2): ``identity_of(address) -> Identity | None``, the identity of an address without a
    signature, so that the operator can name a user by any address form (``[access]`` lists, ``w3gate
    users``). A chain without it is named by its canonical account as ``w3gate users list`` shows it.
    """

    name: str
    aliases: Sequence[str]

    def verify(self, credentials: Credentials) -> Identity | None: ...

    # Optional (1.1): a chain that also verifies bound tokens (docs/tokens.md) has ``sign_in``, the account
    # word of its sign-in message ("Ethereum" in "... sign in with your Ethereum account:"), and
    # ``verify_sign_in(address, message, signature) -> Identity | None`` checking ``signature`` (bytes) of
    # ``message`` (the UTF-8 message bytes) by ``address`` (as the message gives it); same rules as verify.


@runtime_checkable
class SigningKey(Protocol):
    """A key loaded from a user's secret by a :class:`Signer` (never logged or printed).

    ``address``: the address its tokens name. ``w3auth_credentials()``: the W3Auth token's decoded text,
    ``<chain type>-<address>:<signature>``. ``sign(message)``: the signature bytes of ``message`` as the
    chain's wallets sign a sign-in message (what ``verify_sign_in`` accepts).
    """

    address: str

    def w3auth_credentials(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


@runtime_checkable
class Signer(Protocol):
    """Makes a chain's keys from the secrets its wallets export (``w3gate token --chain NAME``).

    ``name``: the ``--chain`` value (the chain's canonical name). ``sign_in``: the account word of its bound
    tokens (as :class:`Chain`), or ``None`` when it makes W3Auth tokens only. ``load(secret)``: the key, or
    ``ValueError`` with a message that never quotes the secret.
    """

    name: str
    sign_in: str | None

    def load(self, secret: str) -> SigningKey: ...


@dataclass(frozen=True, slots=True)
class SimpleChain:
    """A ready :class:`Chain` built from a function, for plugins that need no state."""

    name: str
    aliases: Sequence[str]
    verifier: Any = field(repr=False)

    def verify(self, credentials: Credentials) -> Identity | None:
        return self.verifier(credentials)


@hookspec
def w3gate_chains(settings: Mapping[str, Any]) -> Sequence[Chain]:  # type: ignore[empty-body]
    """Return the chains this plugin verifies.

    ``settings`` is the operator's ``[chains]`` configuration table (e.g. ``settings.get("flow", {})``),
    so a plugin can read options such as an access-node URL. Implementations may omit the argument.
    """


# -- admission (1.2) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PinRequest:
    """A pin request about to be accepted (``POST /pins``, or ``POST /pins/{requestid}`` replacing one).

    ``cid`` is the CID as the user wrote it, ``size`` the bytes the Crust order will be placed for (the
    chain's reported size when the content is known, else the operator's ``default_file_size``, capped below
    the runtime's maximum): the figure ``bytes_per_user`` counts. ``replaces`` is the requestid replaced.
    """

    identity: Identity
    cid: str
    name: str | None
    meta: Mapping[str, str]
    size: int
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Refuse the pin request: the client gets ``status`` (a 4xx) and the spec's Failure body
    ``{"error": {"reason": reason, "details": details}}``; ``retry_after`` (seconds) adds ``Retry-After``."""

    reason: str
    details: str
    status: int = 403
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """Accept, provided the user's totals stay within these once the pin is added (0: no bound).

    The store checks them in the transaction that adds the pin, so they hold under concurrent requests.
    ``pins``: live pins; ``bytes``: the sum of their ``size``; ``pins_per_day``: pins added this UTC day.
    When several plugins answer, the smallest bound of each kind applies.
    """

    pins: int = 0
    bytes: int = 0
    pins_per_day: int = 0


@hookspec
def w3gate_admit(request: PinRequest, settings: Mapping[str, Any]) -> Refusal | Quota | None:
    """Accept (``None``, or a :class:`Quota`) or refuse (a :class:`Refusal`) a pin request.

    Called for every pin request, after the request is valid and before anything is stored; every
    plugin is asked and any refusal refuses. ``settings`` is the operator's ``[admission]`` table
    (read your own sub-table). Third-party hooks run in a worker thread (they may block briefly, and
    must be thread-safe); one that raises or takes over 10 s refuses the request with 503.
    Implementations may omit the ``settings`` argument.
    """


@hookspec
def w3gate_signers(settings: Mapping[str, Any]) -> Sequence[Signer]:  # type: ignore[empty-body]
    """Return the signers this plugin offers to ``w3gate token`` (optional hook, hookspec 1.1).

    ``settings`` is the ``[chains]`` table, as for :func:`w3gate_chains`. Implementations may omit it.
    """
