"""Turning an ``Authorization`` header into a verified :class:`Identity`, with a cache.

W3Auth tokens are static bearer credentials (no expiry, FORMAT.md 5.1) that clients send on every
request, so a verified token is remembered: a repeated token costs a hash and a dict look-up instead of a
signature check. Cache keys are a keyed hash of the credentials (the secret key lives only in this
process), so neither the cache nor any log line holds a token. Signature checks run in worker threads so
that they never stall the trio event loop, admitted fairly between client addresses (:mod:`fairgate`):
whatever one client floods, another's first request waits for at most one check per other waiting client.

Bound tokens (:mod:`w3gate.w3auth.bound`) are cached the same way: what never changes (message, audience,
signature) is checked once per token; what does (expiry, revocation) at every use, against the clock and the
``revoked_before`` look-up the service hands in (itself a short-lived cache: :mod:`w3gate.services.tokens`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol

import trio

from w3gate.hookspecs import Chain, Credentials, Identity, InvalidSignature
from w3gate.w3auth import bound
from w3gate.w3auth.bound import BOUND_PREFIX, BoundClaims, BoundPolicy
from w3gate.w3auth.fairgate import FairGate, client_key
from w3gate.w3auth.token import (
    INVALID_SIGNATURE,
    UNSUPPORTED,
    AuthError,
    extract_token,
    js_trim,
    parse_token,
)

__all__ = ["Authenticator", "AuthError"]

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 10_000
DEFAULT_NEGATIVE_CACHE_SIZE = 2_000
DEFAULT_NEGATIVE_TTL = 60.0  # seconds; a rejected token is re-checked after this
DEFAULT_QUEUE_PER_CLIENT = 32  # uncached checks one client address may have waiting; more get 429
W3AUTH_OFF = "plain W3Auth tokens are turned off on this service: use a bound token (w3gate token, or the page)"
RevokedBefore = Callable[[str], Awaitable[int | None]]  # user_key -> revocation instant (ms) or None
Adopt = Callable[[Identity], Awaitable[None]]  # takes over what is stored under an identity's aliases
_LONG_RUN = re.compile(r"[0-9A-Za-z+/=_\-]{40,}")


class _Registry(Protocol):
    def lookup(self, chain_type: str) -> Chain | None: ...


class _Definitive(Exception):
    """The verifier said no (None or InvalidSignature): safe to remember the rejection.

    ``details`` is the 401's text (a bound token says why; a W3Auth token only ``Invalid Signature``)."""

    def __init__(self, reason: str, details: str = INVALID_SIGNATURE) -> None:
        super().__init__(reason)
        self.details = details


class _LRU:
    """A small thread-safe LRU map with an optional per-entry lifetime."""

    def __init__(self, size: int, ttl: float | None = None) -> None:
        self.size = max(0, size)
        self.ttl = ttl
        self._data: OrderedDict[bytes, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> object | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            stamp, value = entry
            if self.ttl is not None and time.monotonic() - stamp > self.ttl:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def put(self, key: bytes, value: object) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Authenticator:
    """Authenticates ``Authorization`` headers against the loaded chain verifiers.

    ``cache_size`` bounds the verified-token cache, ``negative_cache_size`` / ``negative_ttl`` the cache of
    tokens a verifier rejected (only definitive rejections, not verifier crashes, which may be transient);
    ``max_threads`` bounds concurrent signature checks in :meth:`authenticate`, which admits waiting checks
    round-robin by client address, at most ``queue_per_client`` waiting per address.
    """

    def __init__(
        self,
        registry: _Registry,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        negative_cache_size: int = DEFAULT_NEGATIVE_CACHE_SIZE,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        max_threads: int | None = None,
        queue_per_client: int = DEFAULT_QUEUE_PER_CLIENT,
        bound_policy: BoundPolicy | None = None,
        w3auth: bool = True,
        revoked_before: RevokedBefore | None = None,
        adopt: Adopt | None = None,
    ) -> None:
        self.registry = registry
        self.bound_policy = bound_policy  # None: bound tokens are refused
        self.w3auth = w3auth
        self.revoked_before = revoked_before
        self.adopt = adopt  # run for an identity with aliases, before its revocation is looked up
        self._valid = _LRU(cache_size)
        self._invalid = _LRU(negative_cache_size, ttl=negative_ttl)
        self._hash_key = os.urandom(32)
        self._max_threads = max_threads or max(2, os.cpu_count() or 2)
        self._limiter: trio.CapacityLimiter | None = None
        self.gate = FairGate(self._max_threads, queue_per_client)
        # token cache look-ups, read by /metrics (plain ints: this is every request's path)
        self.cache_hits = 0  # a verified token
        self.cache_rejections = 0  # a token a verifier rejected lately
        self.cache_misses = 0  # a signature check was run

    # -- public -------------------------------------------------------------------------------------

    def authenticate_sync(self, header: str | None) -> Identity:
        """Verify in the calling thread (for scripts, tests and benchmarks; no revocation look-up)."""
        token, key, cached = self._prepare(header)
        if cached is None:
            check = self._resolve(token)
            self.cache_misses += 1
            cached = self._finish(key, check())
        return self._admit(cached, None)[0]

    async def authenticate(self, header: str | None, client: str | None = None,
                           before_check: Callable[[], None] | None = None) -> Identity:
        """Verify from trio: uncached tokens are checked in a worker thread, taking turns by ``client``
        (the client address, :mod:`w3gate.clientaddr`); raises ApiError 429 when that address already has
        its share waiting. ``before_check`` runs for any token not verified before (it may refuse by raising)."""
        return (await self.authenticate_claims(header, client, before_check))[0]

    async def authenticate_claims(
        self, header: str | None, client: str | None = None, before_check: Callable[[], None] | None = None
    ) -> tuple[Identity, BoundClaims | None]:
        """:meth:`authenticate`, also returning a bound token's claims (None for a W3Auth token)."""
        token, key = self._token_key(header)
        cached: Identity | BoundClaims | None = self._valid.get(key)  # type: ignore[assignment]
        if cached is not None:
            self.cache_hits += 1
        else:
            if before_check is not None:
                before_check()
            cached = self._cached(key)  # a token rejected before: refused again without a check
        if cached is None:
            check = self._resolve(token)
            if self._limiter is None:
                self._limiter = trio.CapacityLimiter(self._max_threads)
            async with self.gate.admitted(client_key(client)):
                cached = self._cached(key)  # verified by another request while this one waited
                if cached is None:
                    self.cache_misses += 1
                    cached = self._finish(key, await trio.to_thread.run_sync(check, limiter=self._limiter))
        identity = cached.identity if isinstance(cached, BoundClaims) else cached
        if identity.aliases and self.adopt is not None:
            await self.adopt(identity)
        revoked = await self.revoked_before(identity.user_key) if self.revoked_before is not None else None
        return self._admit(cached, revoked)

    def clear_cache(self) -> None:
        self._valid.clear()
        self._invalid.clear()

    @property
    def cached_tokens(self) -> int:
        return len(self._valid)

    # -- steps --------------------------------------------------------------------------------------

    def _prepare(self, header: str | None) -> tuple[str, bytes, Identity | BoundClaims | None]:
        """The header's token, its cache key, and its identity if it was verified before.

        The key is a hash of the token word itself, so a cache hit costs no decoding at all.
        """
        token, key = self._token_key(header)
        return token, key, self._cached(key)

    def _token_key(self, header: str | None) -> tuple[str, bytes]:
        token = extract_token(header)
        key = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=32, key=self._hash_key).digest()
        return token, key

    def _resolve(self, token: str) -> Callable[[], Identity | BoundClaims | Exception]:
        """The check to run for an uncached token; what is refused without crypto is refused here."""
        if token.startswith(BOUND_PREFIX):
            if self.bound_policy is None:
                raise AuthError(f"{bound.MALFORMED}: bound tokens are not accepted here")
            return partial(self._run_bound, token, self.bound_policy)
        if not self.w3auth:
            raise AuthError(W3AUTH_OFF)
        credentials = parse_token(token)
        chain = self._lookup(credentials.chain_type)
        if chain is None:
            raise AuthError(UNSUPPORTED)
        if not credentials.signature or not credentials.address:  # can never verify: no crypto spent
            raise AuthError(INVALID_SIGNATURE)
        return partial(self._run_verify, chain, credentials)

    def _admit(self, value: Identity | BoundClaims, revoked_ms: int | None) -> tuple[Identity, BoundClaims | None]:
        """The checks made at every use, cached or not: a bound token's times; revocation."""
        if isinstance(value, BoundClaims):
            bound.check_claims(value, int(time.time() * 1000), revoked_ms)
            return value.identity, value
        if not self.w3auth:
            raise AuthError(W3AUTH_OFF)
        if revoked_ms is not None:
            raise AuthError(f"{bound.REVOKED}: this user revoked their tokens; plain W3Auth tokens are refused "
                            "from then on (use a bound token)")
        return value, None

    def _lookup(self, chain_type: str) -> Chain | None:
        # JS trim() + toLowerCase(), then a plain alias match (the registry's own strip() would also
        # remove characters JS keeps, so anything still padded after the JS trim cannot be an alias).
        name = js_trim(chain_type).lower()
        if not name or name != name.strip():
            return None
        return self.registry.lookup(name)

    def _cached(self, key: bytes) -> Identity | BoundClaims | None:
        identity = self._valid.get(key)
        if identity is not None:
            self.cache_hits += 1
            return identity  # type: ignore[return-value]
        details = self._invalid.get(key)
        if details is not None:
            self.cache_rejections += 1
            raise AuthError(str(details))
        return None

    def _run_bound(self, token: str, policy: BoundPolicy) -> BoundClaims | Exception:
        """Parse and check a bound token's message and signature (never raises: it runs in a thread)."""
        try:
            message, signature = bound.split_token(token)
            signin = bound.parse_message(message)
            bound.check_message(signin, policy)
        except AuthError as exc:  # the same text refused the same way every time: cached
            return _Definitive(exc.details, exc.details)
        chain = self.registry.lookup(signin.family.lower())
        verify = getattr(chain, "verify_sign_in", None)
        if verify is None:
            details = f"{bound.MALFORMED}: sign-in with {signin.family} accounts is not accepted here"
            return _Definitive(details, details)
        try:
            identity = verify(signin.address, message.encode(), signature)
        except InvalidSignature as exc:
            return _Definitive(str(exc) or "rejected", bound.BAD_SIGNATURE)
        except Exception as exc:  # a verifier bug or a transient failure: not cached
            return exc
        if not isinstance(identity, Identity):
            return _Definitive("verifier returned no identity", bound.BAD_SIGNATURE)
        return BoundClaims(identity, signin.issued_at_ms, signin.expires_ms or 0, signin.not_before_ms)

    def _run_verify(self, chain: Chain, credentials: Credentials) -> Identity | Exception:
        """Call the verifier, turning every failure into a value (never raises: it runs in a thread)."""
        try:
            identity = chain.verify(credentials)
        except InvalidSignature as exc:
            return _Definitive(str(exc) or "rejected")
        except Exception as exc:  # a verifier bug or a transient failure: not cached
            return exc
        if identity is None:
            return _Definitive("verifier returned None")
        if not isinstance(identity, Identity):
            return TypeError(f"verifier returned {type(identity).__name__}, not Identity")
        return identity

    def _finish(self, key: bytes, outcome: Identity | BoundClaims | Exception) -> Identity | BoundClaims:
        if isinstance(outcome, (Identity, BoundClaims)):
            self._valid.put(key, outcome)
            return outcome
        details = INVALID_SIGNATURE
        if isinstance(outcome, _Definitive):
            details = outcome.details
            self._invalid.put(key, details)
        # The reason may quote what the verifier saw; log only its type and a short, bounded text
        # under a correlation id derived from the keyed hash (useless to anyone without this process).
        log.debug("token %s rejected: %s", key.hex()[:12], _safe_reason(outcome))
        raise AuthError(details)


def _safe_reason(exc: Exception) -> str:
    """A short description of a rejection with long hex/base64-like runs (signatures) elided."""
    text = _LONG_RUN.sub("<elided>", str(exc))[:200]
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, _Definitive) else text
