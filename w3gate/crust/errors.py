"""What the chain said no with, sorted by who pays for it.

Two kinds of refusal cost the operator money if they are mistaken for a CID's fault: a node refusing the
extrinsic (nothing was paid, nothing is wrong with the CIDs) and a dispatch error that says the whole
market or account cannot order now (``PlaceOrderNotAvailable``, ``InsufficientCurrency``). Those pause
ordering and re-queue the batch without charging an attempt; only errors that name the order itself
(``FileTooLarge``, ``FileSizeNotCorrect``) count against the CID.
"""

from __future__ import annotations

from dataclasses import dataclass


class ChainUnavailable(Exception):
    """The endpoint cannot be reached, dropped the connection, or answered nonsense: reconnect with back-off."""


# Substrate's author RPC error codes (client/rpc-api/src/author/error.rs)
POOL_INVALID_TX = 1010
POOL_UNKNOWN_VALIDITY = 1011
POOL_TEMPORARILY_BANNED = 1012
POOL_ALREADY_IMPORTED = 1013
POOL_TOO_LOW_PRIORITY = 1014
POOL_CYCLE_DETECTED = 1015
POOL_IMMEDIATELY_DROPPED = 1016

# kinds of node rejection
KNOWN = "known"  # already in the pool (or banned because it was): keep waiting for it
STALE = "stale"  # its nonce is used: maybe by this very extrinsic, included: look for it until its era ends
PAYMENT = "payment"  # the account cannot pay the fee
EXHAUSTS = "exhausts"  # too big for a block: the batch must shrink
BAD_PROOF = "bad_proof"  # signature invalid: signed for another runtime version (an upgrade) or genesis
ANCIENT = "ancient"  # its era's birth block is gone: it can never be included
PRIORITY = "priority"  # another extrinsic with the same nonce is in the pool
REFUSED = "refused"  # any other refusal (future, call not expected, unknown validity, dropped, bad format)

# InvalidTransaction's Display texts (sp-runtime transaction_validity.rs) -> kind
_INVALID_TEXT = (
    ("outdated", STALE),
    ("pay some fees", PAYMENT),
    ("exhaust the block limits", EXHAUSTS),
    ("bad signature", BAD_PROOF),
    ("bad signer", BAD_PROOF),
    ("ancient birth block", ANCIENT),
)


class TxRejected(Exception):
    """The node refused the extrinsic: it is not in the node's pool. ``kind`` is one of the kinds above."""

    def __init__(self, message: str, kind: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code

    @property
    def in_pool(self) -> bool:
        """The node holds it (or its nonce was used): it may still be included, so it must not be re-signed."""
        return self.kind in (KNOWN, STALE)


def classify_rejection(code: int | None, message: str, data: str) -> str:
    """The kind of an ``author_submitExtrinsic`` error, from its JSON-RPC code and texts."""
    text = f"{message} {data}".lower()
    if code in (POOL_TEMPORARILY_BANNED, POOL_ALREADY_IMPORTED) or "already imported" in text \
            or "temporarily banned" in text:
        return KNOWN
    if code == POOL_TOO_LOW_PRIORITY or "priority is too low" in text:
        return PRIORITY
    if code in (POOL_INVALID_TX, None) or "invalid transaction" in text:
        for needle, kind in _INVALID_TEXT:
            if needle in text:
                return kind
    return REFUSED


# Market dispatch errors that name the order (or the file of a prepaid call: add_prepaid on a file the chain
# no longer has, calculate_reward on a file still pending) itself; every other dispatch error
# (PlaceOrderNotAvailable, InsufficientCurrency, a Balances or System error) says the market or the account
# cannot order now
ORDER_ERRORS = frozenset({"FileSizeNotCorrect", "FileTooLarge", "FileNotExist", "NotInRewardPeriod"})


@dataclass(frozen=True)
class DispatchFailure:
    """A decoded dispatch error: ``pallet.name`` where the metadata knows it."""

    pallet: str | None
    name: str | None
    text: str

    @property
    def chain_wide(self) -> bool:
        """Not the CID's fault: anything but the Market's own per-order errors (a Balances or System error
        of the batch, an unknown module error, the market switched off, too little money)."""
        return not (self.pallet == "Market" and self.name in ORDER_ERRORS)
