"""w3gate: an IPFS Pinning Service with web3 wallet sign-in, storing pins on the Crust Network.

The public API for chain plugins is re-exported here (see ``docs/plugins.md``)::

    from w3gate import hookimpl, Chain, Credentials, Identity
"""

__version__ = "0.1.0"

from w3gate.hookspecs import (  # noqa: E402  (version first: setuptools reads it)
    HOOKSPEC_VERSION,
    Chain,
    Credentials,
    Identity,
    InvalidSignature,
    SimpleChain,
    hookimpl,
)

__all__ = [
    "__version__",
    "HOOKSPEC_VERSION",
    "Chain",
    "Credentials",
    "Identity",
    "InvalidSignature",
    "SimpleChain",
    "hookimpl",
]
