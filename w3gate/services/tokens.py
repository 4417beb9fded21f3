"""Token revocation and the parameters the page and ``w3gate token`` build bound tokens with.

Revocation is checked at every request, so the instant each user revoked at is remembered in memory and
read again from the database when it is older than ``REVOCATION_TTL``: a revocation made through this
instance counts at once, one made through another instance sharing the database within that many seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from w3gate.errors import unauthorized
from w3gate.store.interface import Store
from w3gate.timestamps import rfc3339_ms
from w3gate.w3auth.bound import BoundClaims, BoundPolicy, policy_for, revocation_boundary, statement_for

__all__ = ["REVOCATION_TTL", "REVOKE_WINDOW_MS", "TokenService", "policy_for"]

REVOCATION_TTL = 5.0  # seconds a remembered revocation instant is trusted before it is read again
REVOKE_WINDOW_MS = 10 * 60 * 1000  # POST /auth/revoke needs a bound token issued this recently
MAX_REMEMBERED = 100_000  # users whose revocation instant is remembered; past it the memory starts afresh


@dataclass
class TokenService:
    db: Store
    policy: BoundPolicy
    default_ttl_s: int
    w3auth: bool = True

    def __post_init__(self) -> None:
        self._revoked: dict[str, tuple[float, int | None]] = {}

    def params(self) -> dict[str, Any]:
        """``GET /auth/params``: what a producer needs to build a bound token this service accepts."""
        return {
            "domain": self.policy.domain,
            "uri": self.policy.uri,
            "psa": self.policy.uri + "/psa",
            "statement": statement_for(self.policy),
            "default_ttl": self.default_ttl_s,
            "max_ttl": self.policy.max_ttl_s,
            "w3auth": self.w3auth,
        }

    async def revoked_before(self, user_key: str) -> int | None:
        """The user's revocation instant (ms), from memory when read less than REVOCATION_TTL ago."""
        now = time.monotonic()
        entry = self._revoked.get(user_key)
        if entry is not None and now - entry[0] < REVOCATION_TTL:
            return entry[1]
        value = await self.db.revoked_before(user_key)
        if len(self._revoked) >= MAX_REMEMBERED:
            self._revoked.clear()
        self._revoked[user_key] = (now, value)
        return value

    def forget(self, user_key: str) -> None:
        """Read the user's revocation from the database at the next look-up (it was moved there)."""
        self._revoked.pop(user_key, None)

    async def revoke(self, user_key: str, claims: BoundClaims | None) -> dict[str, str]:
        """``POST /auth/revoke``: refuse the user's tokens issued up to now (this server's clock), the revoking
        one included, allowing for the clock skew tokens are accepted with (:func:`revocation_boundary`).

        The revoking token must be recent, and not dated ahead of this server's clock: a revocation moves to
        its own instant at the latest, so one dated ahead would lock out the tokens the user signs next."""
        now_ms = int(time.time() * 1000)
        if claims is None:
            raise unauthorized("revoking needs a bound token (a W3Auth token cannot say when it was made)")
        if claims.issued_at_ms < now_ms - REVOKE_WINDOW_MS:
            raise unauthorized(
                f"revoking needs a bound token issued within the last {REVOKE_WINDOW_MS // 60000} minutes; "
                f"this one was issued at {rfc3339_ms(claims.issued_at_ms)}"
            )
        if claims.issued_at_ms > now_ms:
            raise unauthorized(
                "revoking needs a bound token issued no later than now: this one says "
                f"{rfc3339_ms(claims.issued_at_ms)}, this service's clock says {rfc3339_ms(now_ms)} "
                "(is the signer's clock ahead?)"
            )
        in_force = await self.db.revoke(user_key, revocation_boundary(now_ms), now_ms)
        self._revoked[user_key] = (time.monotonic(), in_force)
        return {"revoked_before": rfc3339_ms(in_force)}


