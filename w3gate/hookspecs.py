"""The plugin contract: how a chain's wallet signatures are taught to w3gate.

This module is public API, versioned by ``HOOKSPEC_VERSION``. A plugin is a module (found through the
``w3gate`` entry-point group, or in the operator's plugin directory) with a ``@hookimpl`` function
``w3gate_chains`` returning :class:`Chain` objects, and (since 1.1) optionally ``w3gate_signers`` returning
:class:`Signer` objects, which teach ``w3gate token`` to make that chain's tokens from a secret. The built-in
chains (substrate, ethereum, solana) register through these very hooks, exactly as a third-party plugin does.

Compatibility: within one major ``HOOKSPEC_VERSION`` fields and hooks are only ever added, never removed
or changed in meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pluggy

HOOKSPEC_VERSION = "1.1"
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
    yield equal ``(chain, account)`` belong to the same user. ``address`` is the address as the token gave
    it, for display only.
    """

    chain: str
    account: str
    address: str = ""

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


@hookspec
def w3gate_signers(settings: Mapping[str, Any]) -> Sequence[Signer]:  # type: ignore[empty-body]
    """Return the signers this plugin offers to ``w3gate token`` (optional hook, hookspec 1.1).

    ``settings`` is the ``[chains]`` table, as for :func:`w3gate_chains`. Implementations may omit it.
    """
