"""The xx plugin recognises xx tokens and refuses them (see its docstring for why)."""

import json
from pathlib import Path

import pytest
import w3gate_xx

from w3gate.hookspecs import InvalidSignature
from w3gate.w3auth.token import parse_authorization

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]
(CHAIN,) = w3gate_xx.w3gate_chains()


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    credentials = parse_authorization(vector["header_value"])
    assert credentials.chain_type in CHAIN.aliases
    assert vector["w3gate_expect_valid"] is False
    with pytest.raises(InvalidSignature):
        CHAIN.verify(credentials)
