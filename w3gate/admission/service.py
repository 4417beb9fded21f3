"""Admission: who may pin, how much and how fast, decided for each request.

* Every authenticated request (``/psa``, ``POST /auth/revoke``) takes a token of its identity's
  ``requests_per_minute`` bucket and one of its client address's ``requests_per_address_per_minute``; every
  401 one of its address's ``auth_failures_per_minute`` bucket, and an address with none left gets 429
  before any signature check (a token verified before still passes: it costs no check).
* A pin request's ``meta`` is at most ``max_meta_bytes``; its pin counts against its client address's UTC day
  (``pins_per_address_per_day``, and ``identities_per_address_per_day`` on its identity's first pin), in the
  store's transaction, as the per-user quotas are.
* A pin request is put to every ``w3gate_admit`` hook: the built-in limits (:mod:`.builtin`) first, then
  the plugins'. Any refusal refuses; the quotas they return are checked by the store in the transaction
  that adds the pin (:func:`w3gate.store.users.admit`).
* Users' own limits and blocks (``w3gate users``) live in the database: this service re-reads them within
  ``REFRESH_INTERVAL`` of a change (it polls a version counter the CLI moves), so no restart is needed.

Every refusal is made by :meth:`Admission.refuse`, with the limit's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from w3gate.admission.builtin import AccessLists, BuiltinLimits, user_limit
from w3gate.admission.identities import resolve_chains, resolve_user
from w3gate.admission.rates import RateLimiter
from w3gate.admission.settings import Access, Limits
from w3gate.domain.pins import NewPin
from w3gate.errors import ApiError
from w3gate.hookspecs import Identity, PinRequest, Quota, Refusal
from w3gate.plugins import Admitter, ChainRegistry
from w3gate.store.interface import Store
from w3gate.store.users import DAY_MS, AddressQuota, QuotaExceeded, UserRow
from w3gate.w3auth.fairgate import client_key

__all__ = ["Admission", "resolve_access"]

log = logging.getLogger(__name__)
REFRESH_INTERVAL = 1.0  # seconds: how soon a change made by `w3gate users` takes effect
SEEN_INTERVAL = 5.0  # seconds between writes of users' last-seen times
PRUNE_INTERVAL = 3600.0  # seconds between removals of past days' per-address counts
HOOK_TIMEOUT = 10.0  # seconds a plugin's admission hook may take before the request is refused (503)
HOOK_THREADS = 4


def resolve_access(access: Access, registry: ChainRegistry) -> AccessLists:
    """``[access]`` as user keys and chain names; an identity no loaded chain can read is a ValueError."""
    return AccessLists(
        allow=frozenset(resolve_user(t, registry) for t in access.allow),
        deny=frozenset(resolve_user(t, registry) for t in access.deny),
        allow_chains=resolve_chains(access.allow_chains, registry),
        deny_chains=resolve_chains(access.deny_chains, registry),
    )


def _retry_after_midnight(now_ms: int) -> int:
    return max(1, -(-(DAY_MS - now_ms % DAY_MS) // 1000))


class Admission:
    def __init__(self, db: Store, limits: Limits, access: AccessLists, *, admitters: list[Admitter] | None = None,
                 settings: Mapping[str, Any] | None = None, order_size: Callable[[int | None], int] = lambda s: s or 0,
                 on_refusal: Callable[[str], None] | None = None) -> None:
        self.db = db
        self.on_refusal = on_refusal  # told the limit of every refusal (w3gate_limits_hit_total)
        self.limits = limits
        self.settings = settings or {}
        self.order_size = order_size
        self.requests = RateLimiter()
        self.address_requests = RateLimiter()
        self.auth_failures = RateLimiter()
        self._users: dict[str, UserRow] = {}  # users with a setting of the operator's (blocks, own limits)
        self._version: int | None = None
        self._seen: dict[str, tuple[str, int]] = {}
        builtin = BuiltinLimits(limits, access, lambda key: self._users.get(key))
        self.admitters = [Admitter("limits", builtin.w3gate_admit, False, builtin=True), *(admitters or [])]
        self._hook_threads = trio.CapacityLimiter(HOOK_THREADS)

    # -- the one place a limit refuses -------------------------------------------------------------

    def refuse(self, limit: str, status: int, reason: str, details: str, retry_after: int | None = None) -> ApiError:
        """The refusal for ``limit`` (a ``[limits]`` key, ``blocked``/``deny``/``allow``, or ``plugin:<name>``):
        every refusal of a request by a limit, a list or a plugin is made here."""
        if self.on_refusal is not None:
            self.on_refusal(limit)
        return ApiError(status, reason, details, retry_after)

    # -- per request -------------------------------------------------------------------------------

    def check_request(self, identity: Identity, client: str | None = None) -> None:
        """Count an authenticated request against its identity's ``requests_per_minute`` and its client
        address's ``requests_per_address_per_minute``."""
        key = identity.user_key
        self._seen[key] = (identity.address, int(time.time() * 1000))
        per_address = self.limits.requests_per_address_per_minute
        if per_address and client and (wait := self.address_requests.take(client_key(client), per_address)):
            raise self.refuse("requests_per_address_per_minute", 429, "REQUESTS_PER_ADDRESS_PER_MINUTE",
                              f"more than {per_address} requests a minute from this address, whatever the keys "
                              f"(requests_per_address_per_minute); retry in {wait} s", wait)
        user = next((row for k in (key, *identity.aliases) if (row := self._users.get(k)) is not None), None)
        limit = user_limit(self.limits, user, "requests_per_minute")
        if limit and (wait := self.requests.take(key, limit)):
            raise self.refuse("requests_per_minute", 429, "REQUESTS_PER_MINUTE",
                              f"more than {limit} requests a minute from this identity (requests_per_minute); "
                              f"retry in {wait} s", wait)

    def address_quota(self, client: str | None) -> AddressQuota | None:
        """The per-address day limits a pin from ``client`` is counted against (None: none apply)."""
        quota = AddressQuota(client_key(client), self.limits.pins_per_address_per_day,
                             self.limits.identities_per_address_per_day)
        return quota if quota.active else None

    def check_client(self, client: str | None) -> None:
        """Before a signature check: refuse an address that used up its ``auth_failures_per_minute``."""
        limit = self.limits.auth_failures_per_minute
        if limit and (wait := self.auth_failures.wait(client_key(client), limit)):
            raise self.refuse("auth_failures_per_minute", 429, "AUTH_FAILURES_PER_MINUTE",
                              f"more than {limit} failed sign-ins a minute from this address "
                              f"(auth_failures_per_minute); retry in {wait} s", wait)

    def auth_failed(self, client: str | None) -> None:
        if self.limits.auth_failures_per_minute:
            self.auth_failures.take(client_key(client), self.limits.auth_failures_per_minute)

    # -- pin requests ------------------------------------------------------------------------------

    async def admit(self, identity: Identity, pin: NewPin, replaces: str | None = None) -> tuple[Quota, int]:
        """Ask every admission hook; returns the quota the store must keep and the size counted, or
        raises the refusal."""
        if self.limits.max_meta_bytes and (used := meta_bytes(pin.meta)) > self.limits.max_meta_bytes:
            raise self.refuse("max_meta_bytes", 400, "BAD_REQUEST",
                              f"meta takes {used} bytes (UTF-8, keys and values), more than the "
                              f"{self.limits.max_meta_bytes} allowed (max_meta_bytes)")
        size = self.order_size(await self.db.known_file_size(pin.key))
        request = PinRequest(identity, pin.cid, pin.name, pin.meta, size, replaces)
        quotas: list[Quota] = []
        for admitter in self.admitters:
            answer = await self._answer(admitter, request)
            if answer is not None:
                quotas.append(answer)
        return _tightest(quotas), size

    async def precheck(self, identity: Identity) -> None:
        """Refuse, before an upload's body is read, an identity no new pin could be admitted for now: blocked,
        left out by ``[access]``, or at its pins, pins-a-day or bytes quota (a new CID counted at the size
        :meth:`admit` will count). The plugins and the quotas' final check come with the pin itself."""
        quota = await self._answer(self.admitters[0], PinRequest(identity, "", None, {}, 0, None))
        if quota is None:
            return
        user = await self.db.get_user(identity.user_key, int(time.time() * 1000))
        if user is None:
            return
        size = self.order_size(None)
        if quota.pins and user.pins >= quota.pins:
            raise self.over_quota(QuotaExceeded("pins_per_user", user.pins, quota.pins), size)
        if quota.pins_per_day and user.pins_today >= quota.pins_per_day:
            raise self.over_quota(QuotaExceeded("pins_per_day_per_user", user.pins_today, quota.pins_per_day), size)
        if quota.bytes and user.bytes + size > quota.bytes:
            raise self.over_quota(QuotaExceeded("bytes_per_user", user.bytes, quota.bytes), size)

    async def _answer(self, admitter: Admitter, request: PinRequest) -> Quota | None:
        """``admitter``'s quota for ``request`` (None: no opinion), or its refusal raised."""
        answer = await self._ask(admitter, request)
        if isinstance(answer, Refusal):
            status = answer.status if 400 <= answer.status < 500 else 403
            limit = answer.reason.lower() if admitter.builtin else f"plugin:{admitter.name}"
            raise self.refuse(limit, status, answer.reason, answer.details, answer.retry_after)
        return answer

    def over_quota(self, exc: QuotaExceeded, size: int) -> ApiError:
        midnight = _retry_after_midnight(int(time.time() * 1000))
        if exc.limit == "pins_per_day_per_user":
            return self.refuse(exc.limit, 429, "PINS_PER_DAY_PER_USER",
                               f"this identity added {exc.maximum} pins today (UTC), the most allowed "
                               "(pins_per_day_per_user)", midnight)
        if exc.limit == "pins_per_address_per_day":
            return self.refuse(exc.limit, 429, "PINS_PER_ADDRESS_PER_DAY",
                               f"{exc.maximum} pins were added from this address today (UTC) with whatever keys, "
                               "the most allowed (pins_per_address_per_day)", midnight)
        if exc.limit == "identities_per_address_per_day":
            return self.refuse(exc.limit, 429, "IDENTITIES_PER_ADDRESS_PER_DAY",
                               f"{exc.maximum} identities new to this service pinned from this address today (UTC), "
                               "the most allowed (identities_per_address_per_day); pin with a key used here "
                               "before, or tomorrow", midnight)
        if exc.limit == "bytes_per_user":
            return self.refuse(exc.limit, 403, "BYTES_PER_USER",
                               f"this pin would be ordered for {size} bytes and this identity's pins already take "
                               f"{exc.current} of the {exc.maximum} allowed (bytes_per_user); delete pins first")
        return self.refuse(exc.limit, 403, "PINS_PER_USER",
                           f"this identity has {exc.current} pins, the most allowed (pins_per_user); "
                           "delete pins first")

    async def _ask(self, admitter: Admitter, request: PinRequest) -> Refusal | Quota | None:
        kwargs = {"settings": self.settings} if admitter.wants_settings else {}
        if admitter.builtin:
            return admitter.function(request=request, **kwargs)  # type: ignore[no-any-return]

        def call() -> Any:
            try:
                return admitter.function(request=request, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported below, never raised into the service
                return exc

        answer: Any = TimeoutError(f"no answer in {HOOK_TIMEOUT:g} s")
        with trio.move_on_after(HOOK_TIMEOUT):
            answer = await trio.to_thread.run_sync(  # type: ignore[call-arg]  # mypy misreads the signature
                call, limiter=self._hook_threads, abandon_on_cancel=True)
        if answer is None or isinstance(answer, (Refusal, Quota)):
            return answer
        cause = f"{type(answer).__name__}: {answer}" if isinstance(answer, Exception) else f"returned {answer!r:.80}"
        log.error("admission plugin %r failed; the pin request is refused: %s", admitter.name, cause)
        raise self.refuse(f"plugin:{admitter.name}", 503, "ADMISSION_UNAVAILABLE",
                          "a check of this service on new pins failed; the pin was not stored, try again later")

    # -- users' settings ---------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read users' blocks and own limits if ``w3gate users`` changed any since the last look."""
        version = await self.db.users_version()
        if version != self._version:
            version, rows = await self.db.users_with_settings()
            self._users = {r.user_key: r for r in rows}
            self._version = version

    async def flush_seen(self) -> None:
        seen, self._seen = self._seen, {}
        if seen:
            await self.db.seen([(k, address, ms) for k, (address, ms) in seen.items()])

    async def run(self) -> None:
        """Background task: keep users' settings current, record last-seen times, forget past days' per-address
        counts; errors are logged."""
        next_seen = trio.current_time() + SEEN_INTERVAL
        next_prune = trio.current_time()
        try:
            while True:
                await trio.sleep(REFRESH_INTERVAL)
                try:
                    await self.refresh()
                    if trio.current_time() >= next_seen:
                        next_seen = trio.current_time() + SEEN_INTERVAL
                        await self.flush_seen()
                    if trio.current_time() >= next_prune:  # past days' per-address counts: one row a day each
                        next_prune = trio.current_time() + PRUNE_INTERVAL
                        await self.db.forget_address_days(int(time.time() * 1000))
                except Exception as exc:  # a database that is away: keep the last settings, try again
                    log.warning("could not read users' settings: %s", exc)
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 2):
                try:
                    await self.flush_seen()
                except Exception as exc:  # noqa: BLE001 - shutting down: say so and go
                    log.warning("could not record users' last-seen times: %s", exc)


def meta_bytes(meta: Mapping[str, str]) -> int:
    """What ``max_meta_bytes`` counts: the UTF-8 bytes of a pin's meta keys and values."""
    return sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
               for k, v in meta.items())


def _tightest(quotas: list[Quota]) -> Quota:
    def least(values: list[int]) -> int:
        bounded = [v for v in values if v > 0]
        return min(bounded) if bounded else 0

    return Quota(pins=least([q.pins for q in quotas]), bytes=least([q.bytes for q in quotas]),
                 pins_per_day=least([q.pins_per_day for q in quotas]))
