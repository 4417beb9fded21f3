"""Tortoise models: the tables the service reads and writes.

The schema itself is created and upgraded by :mod:`w3gate.store.migrations` (versioned SQL), not by
Tortoise's ``generate_schemas``, so an existing database is upgraded in place by a later release.
Times are integer milliseconds since the epoch: exact, comparable and identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from w3gate.ordering.lifecycle import PIN_STATUS_OF_ORDER as PIN_STATUS_OF_ORDER  # what every pin of a content shows
from w3gate.ordering.lifecycle import PinStatus

PIN_STATUSES = tuple(s.value for s in PinStatus)
# an order's columns a pin shows in its ``info`` (as strings), besides its error as ``status_details``
INFO_FIELDS = ("file_size", "expires_at", "replicas", "cost", "renewal", "dag_size")


class Pin(Model):
    """One pin request of one user (the spec's PinStatus)."""

    id = fields.BigIntField(primary_key=True)
    requestid = fields.CharField(max_length=36, unique=True)
    owner = fields.CharField(max_length=255)
    cid = fields.CharField(max_length=255)  # as the user wrote it
    cid_key = fields.CharField(max_length=255, default="")  # its content's key (w3gate.cids): links it to its order
    name = fields.CharField(max_length=255, null=True)
    status = fields.CharField(max_length=8)
    created_ms = fields.BigIntField(unique=True)
    origins = fields.TextField(default="[]")
    meta = fields.TextField(default="{}")
    size = fields.BigIntField(default=0)  # bytes it was admitted for (bytes_per_user); schema 9

    class Meta:
        table = "pins"


class PinMeta(Model):
    """One key/value of a pin's ``meta``, so that meta filters are indexed lookups."""

    id = fields.BigIntField(primary_key=True)
    pin_id = fields.BigIntField()
    key = fields.CharField(max_length=255)
    value = fields.TextField()

    class Meta:
        table = "pin_meta"


class Order(Model):
    """The Crust storage order for one content, shared by every pin of it in any text form.

    ``cid`` is the text ordered on chain (the chain's file record is keyed by it), ``cid_key`` the content
    key pins link by (:mod:`w3gate.cids`). It is NULL for an order of a content an earlier release ordered in
    two text forms, merged into the other by the content-key migration (schema 7): kept (the chain holds it),
    never claimed, renewed or polled again.

    ``status`` and ``renew_due`` hold :class:`w3gate.ordering.lifecycle.OrderStatus` and ``RenewState`` values
    (the lifecycle module says what each means and what moves it); ``tx_hash``/``tx_nonce`` name the extrinsic an
    order of status ``submitting`` was recorded in before it was sent (reconciled with the chain after a crash).
    """

    cid = fields.CharField(max_length=255, primary_key=True)
    cid_key = fields.CharField(max_length=255, null=True, unique=True)
    status = fields.CharField(max_length=10)
    attempts = fields.IntField(default=0)
    next_try_ms = fields.BigIntField(default=0)
    error = fields.TextField(null=True)
    tx_hash = fields.CharField(max_length=66, null=True)
    tx_nonce = fields.BigIntField(null=True)
    submitted_ms = fields.BigIntField(null=True)
    placed_block = fields.BigIntField(null=True)
    file_size = fields.BigIntField(null=True)
    expires_at = fields.BigIntField(null=True)
    replicas = fields.IntField(null=True)
    renewals = fields.IntField(default=0)
    renew_due = fields.IntField(default=0)
    cost = fields.CharField(max_length=40, null=True)  # units the last batch spent on it, computed before sending
    renewal = fields.CharField(max_length=8, null=True)  # the renewal strategy in force when it was last sent
    dag_size = fields.BigIntField(null=True)  # the content's size as the operator's IPFS node measured it; schema 11
    created_ms = fields.BigIntField()
    updated_ms = fields.BigIntField()

    class Meta:
        table = "orders"


class CrustTx(Model):
    """A signed Crust extrinsic, recorded before it is sent (``status``: sent, included, dropped)."""

    hash = fields.CharField(max_length=66, primary_key=True)
    nonce = fields.BigIntField()
    extrinsic = fields.TextField()
    cids = fields.TextField()  # JSON list, in batch order
    start_block = fields.BigIntField()
    era_end = fields.BigIntField()
    status = fields.CharField(max_length=10)
    included_block = fields.BigIntField(null=True)
    created_ms = fields.BigIntField()
    updated_ms = fields.BigIntField()
    spec_version = fields.IntField(null=True)  # the runtime spec version it was signed under (NULL: not recorded)

    class Meta:
        table = "crust_txs"


class IpfsContent(Model):
    """Content w3gate asked the operator's IPFS node to pin (w3gate.ordering.fetcher); schema 11."""

    cid_key = fields.CharField(max_length=255, primary_key=True)
    cid = fields.CharField(max_length=255)
    state = fields.CharField(max_length=10)  # fetching | held
    ours = fields.IntField(default=1)  # 0: the node had it pinned before w3gate asked: never unpinned by w3gate
    started_ms = fields.BigIntField()
    updated_ms = fields.BigIntField()

    class Meta:
        table = "ipfs_content"


class PinCount(Model):
    """How many pins an owner has in one status; kept by database triggers (migration 4)."""

    owner = fields.CharField(max_length=255, primary_key=True)
    status = fields.CharField(max_length=8)
    n = fields.BigIntField()

    class Meta:
        table = "pin_counts"
