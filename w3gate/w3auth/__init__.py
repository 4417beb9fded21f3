"""W3Auth: Crust's wallet-signature bearer tokens (see /work/shared/w3auth/FORMAT.md).

``token`` parses the ``Authorization`` header like Crust's handler, ``nodecodec`` has the Node decoders
that verifiers (built-in and plugins) need, ``authenticator`` ties parsing, chain lookup, verification
and caching together.
"""

from w3gate.w3auth.nodecodec import node_base64, node_hex
from w3gate.w3auth.token import AuthError, parse_authorization

__all__ = ["AuthError", "parse_authorization", "node_base64", "node_hex"]
