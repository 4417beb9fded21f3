"""What a user is besides their pins: the limits an operator may set for one user (``w3gate users set``), each
overriding the ``[limits]`` setting of the same name; the store keeps them as columns of the ``users`` table."""

from __future__ import annotations

PER_USER = ("pins_per_user", "bytes_per_user", "pins_per_day_per_user", "requests_per_minute")
