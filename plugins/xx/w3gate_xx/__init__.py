"""xx network for w3gate: xx tokens are recognised and refused, because w3gate cannot verify them.

Crust accepted ``xx-<pubkey>-<username>-<fileHash>-<timestamp>-<uploadSig>:<verifSig>`` tokens by POSTing
them to a separate Go service run next to the gateway, which checked RSA signatures against xx's user
discovery (UDB) certificate. w3gate does not implement this (docs/plugins.md, "xx"):

* the check needs xx's UDB certificate and the exact RSA/salt/encoding rules of that Go service, whose
  source is not available to the project, so no implementation could be tested against a real token;
* the identity it yields is a *username* asserted by UDB, not a key, so it cannot be canonical per key
  as w3gate's identities are;
* its timestamp check never fails (FORMAT.md section 5, item 5), so an upload signature is replayable.

This plugin exists so that xx tokens get Crust's answer (401 ``Invalid Signature``, as when the side
service rejects or is absent) rather than ``Unsupported web3 signature``, and so that ``w3gate plugins``
shows the chain type as known. An operator who does not want that can leave ``xx`` out of allowed_chains.
"""

from __future__ import annotations

import logging

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl

__version__ = "0.1.0"
NAME = "xx"
ALIASES = ("xx",)

log = logging.getLogger(__name__)


def verify(credentials: Credentials) -> Identity:
    raise InvalidSignature("xx: xx tokens cannot be verified by w3gate (see docs/plugins.md)")


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    log.warning("xx: xx tokens are recognised but always refused (they cannot be verified offline)")
    return [SimpleChain(NAME, ALIASES, verify)]
