"""Turning an ``Authorization`` header into a verified :class:`Identity`, with a cache.

W3Auth tokens are static bearer credentials (no expiry, FORMAT.md 5.1) that clients send on every
request, so a verified token is remembered: a repeated token costs a hash and a dict look-up instead of a
signature check. Cache keys are a keyed hash of the credentials (the secret key lives only in this
process), so neither the cache nor any log line holds a token. Signature checks run in worker threads so
that they never stall the trio event loop, admitted fairly between client addresses (:mod:`fairgate`):
whatever one client floods, another's first request waits for at most one check per other waiting client.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from typing import Protocol

import trio

from w3gate.hookspecs import Chain, Credentials, Identity, InvalidSignature
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
_LONG_RUN = re.compile(r"[0-9A-Za-z+/=_\-]{40,}")


class _Registry(Protocol):
    def lookup(self, chain_type: str) -> Chain | None: ...


class _Definitive(Exception):
    """The verifier said no (None or InvalidSignature): safe to remember the rejection."""


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
    ) -> None:
        self.registry = registry
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
        """Verify in the calling thread (for scripts, tests and benchmarks)."""
        token, key, cached = self._prepare(header)
        if cached is not None:
            return cached
        credentials, chain = self._resolve(token)
        self.cache_misses += 1
        return self._finish(key, chain, self._run_verify(chain, credentials))

    async def authenticate(self, header: str | None, client: str | None = None) -> Identity:
        """Verify from trio: uncached tokens are checked in a worker thread, taking turns by ``client``
        (the peer's address); raises ApiError 429 when that address already has its share waiting."""
        token, key, cached = self._prepare(header)
        if cached is not None:
            return cached
        credentials, chain = self._resolve(token)
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self._max_threads)
        async with self.gate.admitted(client_key(client)):
            if (cached := self._cached(key)) is not None:  # verified by another request while this one waited
                return cached
            self.cache_misses += 1
            outcome = await trio.to_thread.run_sync(
                self._run_verify, chain, credentials, limiter=self._limiter
            )
        return self._finish(key, chain, outcome)

    def clear_cache(self) -> None:
        self._valid.clear()
        self._invalid.clear()

    @property
    def cached_tokens(self) -> int:
        return len(self._valid)

    # -- steps --------------------------------------------------------------------------------------

    def _prepare(self, header: str | None) -> tuple[str, bytes, Identity | None]:
        """The header's token, its cache key, and its identity if it was verified before.

        The key is a hash of the token word itself, so a cache hit costs no decoding at all.
        """
        token = extract_token(header)
        key = hashlib.blake2b(
            token.encode("utf-8", "surrogatepass"), digest_size=32, key=self._hash_key
        ).digest()
        return token, key, self._cached(key)

    def _resolve(self, token: str) -> tuple[Credentials, Chain]:
        credentials = parse_token(token)
        chain = self._lookup(credentials.chain_type)
        if chain is None:
            raise AuthError(UNSUPPORTED)
        if not credentials.signature or not credentials.address:  # can never verify: no crypto spent
            raise AuthError(INVALID_SIGNATURE)
        return credentials, chain

    def _lookup(self, chain_type: str) -> Chain | None:
        # JS trim() + toLowerCase(), then a plain alias match (the registry's own strip() would also
        # remove characters JS keeps, so anything still padded after the JS trim cannot be an alias).
        name = js_trim(chain_type).lower()
        if not name or name != name.strip():
            return None
        return self.registry.lookup(name)

    def _cached(self, key: bytes) -> Identity | None:
        identity = self._valid.get(key)
        if identity is not None:
            self.cache_hits += 1
            return identity  # type: ignore[return-value]
        if self._invalid.get(key) is not None:
            self.cache_rejections += 1
            raise AuthError(INVALID_SIGNATURE)
        return None

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

    def _finish(self, key: bytes, chain: Chain, outcome: Identity | Exception) -> Identity:
        if isinstance(outcome, Identity):
            self._valid.put(key, outcome)
            return outcome
        if isinstance(outcome, _Definitive):
            self._invalid.put(key, True)
        # The reason may quote what the verifier saw; log only its type and a short, bounded text
        # under a correlation id derived from the keyed hash (useless to anyone without this process).
        reason = _safe_reason(outcome)
        log.debug("token %s rejected by chain %s: %s", key.hex()[:12], chain.name, reason)
        raise AuthError(INVALID_SIGNATURE)


def _safe_reason(exc: Exception) -> str:
    """A short description of a rejection with long hex/base64-like runs (signatures) elided."""
    text = _LONG_RUN.sub("<elided>", str(exc))[:200]
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, _Definitive) else text
