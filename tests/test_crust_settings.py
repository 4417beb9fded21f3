"""Crust settings that decide money and safety: tips in the right unit, an era the chain agrees with."""

from __future__ import annotations

from pathlib import Path

import pytest

from w3gate.crust.client import era_bounds
from w3gate.crust.settings import CRU, era_period_for, load_crust_settings, order_size

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

REPO = Path(__file__).resolve().parent.parent


def settings(**env: str):
    return load_crust_settings({}, env, REPO)


def test_crust_tips_is_whole_cru_as_for_crusts_pinner() -> None:
    assert settings(CRUST_TIPS="0.01").tips == CRU // 100
    assert settings(CRUST_TIPS="2").tips == 2 * CRU
    # w3gate's own key stays in the smallest unit, and wins over the pinner's name
    assert settings(W3GATE_CRUST_TIPS="5", CRUST_TIPS="2").tips == 5
    assert load_crust_settings({"tips": 7}, {}, REPO).tips == 7
    assert load_crust_settings({"tips": 7}, {"CRUST_TIPS": "1"}, REPO).tips == CRU  # env over the file
    for bad in ("-1", "abc", "0.0000000000001", "nan"):
        with pytest.raises(ValueError, match="CRUST_TIPS"):
            settings(CRUST_TIPS=bad)


def test_order_size_stays_strictly_below_the_maximum_file_size() -> None:
    """The market takes only ``reported_file_size < MaximumFileSize``: an order of exactly the maximum fails with
    FileTooLarge and still pays its fee. Before: an unknown size was capped AT the maximum, and a known size at
    or over it was ordered at the maximum."""
    maximum = 32 * 1024**3
    assert order_size(None, maximum, maximum) == maximum - 1  # unknown size: the default, capped below
    assert order_size(0, 2 * maximum, maximum) == maximum - 1
    assert order_size(None, 1024, maximum) == 1024
    assert order_size(maximum - 1, 1024, maximum) == maximum - 1  # known and orderable: as it is
    assert order_size(5, 1024, None) == 5 and order_size(None, 1024, None) == 1024  # no maximum known
    from w3gate.crust.settings import counted_size

    for known in (maximum, maximum + 1):  # known and too large: never ordered, whatever the default
        with pytest.raises(ValueError, match="smaller than its MaximumFileSize") as refused:
            order_size(known, 1024, maximum)
        assert (refused.value.size, refused.value.maximum) == (known, maximum)  # type: ignore[attr-defined]
        assert counted_size(known, 1024, maximum) == known  # bytes_per_user still counts what the pin holds
    assert counted_size(None, maximum, maximum) == maximum - 1


def test_era_period_must_be_a_power_of_two() -> None:
    assert settings(W3GATE_CRUST_ERA_PERIOD="128").era_period == 128
    with pytest.raises(ValueError, match="power of two.*use 128 or 64"):
        settings(W3GATE_CRUST_ERA_PERIOD="100")


def test_era_period_is_bounded_by_block_hash_count() -> None:
    assert era_period_for(64, 2400) == 64
    assert era_period_for(4096, 2400) == 2048  # birth hashes older than BlockHashCount are gone
    assert era_period_for(65536, 250) == 128


@pytest.mark.parametrize(("period", "current", "birth", "death"), [
    (64, 1000, 1000, 1064),
    (64, 5, 5, 69),
    (8192, 10001, 10000, 18192),  # period >> 12 = 2: the phase is quantised to even blocks
    (65536, 70001, 70000, 135536),  # phase 4465 quantised to 16: 4464
])
def test_era_bounds_are_the_chains(period: int, current: int, birth: int, death: int) -> None:
    """sp-runtime's Era::mortal(period, current): phase = current % period quantised by period >> 12; the
    birth is the last block at or before ``current`` with that phase; valid until birth + period."""
    assert era_bounds(period, current) == (birth, death)


def test_secret_from_systemd_credentials_directory(tmp_path: Path) -> None:
    """``LoadCredential=crust-seed:FILE`` (packaging/systemd): systemd puts the file in $CREDENTIALS_DIRECTORY."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "crust-seed").write_text("//Alice\n")
    settings = load_crust_settings({}, {"CREDENTIALS_DIRECTORY": str(creds)}, tmp_path)
    assert settings.seed is not None and settings.seed.reveal() == "//Alice"
    # an explicit setting wins over the credential; a credentials directory without it leaves ordering off
    explicit = load_crust_settings({}, {"CREDENTIALS_DIRECTORY": str(creds), "W3GATE_CRUST_SEED": "//Bob"}, tmp_path)
    assert explicit.seed is not None and explicit.seed.reveal() == "//Bob"
    (creds / "crust-seed").unlink()
    assert load_crust_settings({}, {"CREDENTIALS_DIRECTORY": str(creds)}, tmp_path).seed is None
