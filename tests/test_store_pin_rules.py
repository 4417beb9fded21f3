"""The rules that create a pin are one text each: the general path runs them, PostgreSQL's one statement is made
of them (w3gate.store.pin_rules)."""

from __future__ import annotations

import re

import pytest

from w3gate.store import pin_rules
from w3gate.store.pin_rules import (
    COUNT_DAY,
    INSERT_ORDER,
    INSERT_PIN,
    PIN_STATUS,
    TAKES_A_PIN,
    WITHIN_ADDRESS_DAY,
    WITHIN_QUOTA,
    create_pin_statement,
    render,
)


def test_placeholders_are_one_argument_per_name_in_either_dialect() -> None:
    template = INSERT_ORDER.format(gate="WHERE TRUE")
    values = {"order_cid": "bafkqaaa", "key": "bafkqaaa-key", "now": 1234}
    sqlite, sqlite_args = render("sqlite", template, values)
    postgres, postgres_args = render("postgres", template, values)
    assert sqlite_args == postgres_args == ["bafkqaaa", "bafkqaaa-key", 1234]
    assert "SELECT ?1, ?2, 'queued', ?3, ?3 WHERE TRUE" in sqlite
    assert "SELECT $1::varchar, $2::varchar, 'queued', $3::bigint, $3::bigint WHERE TRUE" in postgres
    assert ":" not in sqlite.replace("::", "")  # every placeholder rendered


@pytest.mark.parametrize(("quota", "address"), [(False, False), (True, False), (True, True)])
def test_the_one_statement_is_made_of_the_general_paths_texts(quota: bool, address: bool) -> None:
    statement = create_pin_statement(quota, address)
    assert INSERT_ORDER.split("{gate}")[0] in statement and INSERT_ORDER.split("{gate}")[1] in statement
    assert PIN_STATUS in statement and TAKES_A_PIN in statement
    assert INSERT_PIN.split("{source}")[0] in statement
    assert (WITHIN_QUOTA in statement and COUNT_DAY in statement) == quota
    assert (WITHIN_ADDRESS_DAY.split("{row}")[0] in statement) == address
    text, args = render("postgres", statement, {name: None for name in pin_rules.TYPES})
    assert len(set(re.findall(r"\$(\d+)::", text))) == len(args)


def test_every_placeholder_has_a_type() -> None:
    for quota, address in [(False, False), (True, False), (True, True)]:
        render("postgres", create_pin_statement(quota, address), {name: None for name in pin_rules.TYPES})
