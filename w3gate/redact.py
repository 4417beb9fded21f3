"""Hiding credentials that ride in URLs (database and chain endpoints) before a URL is shown anywhere.

Endpoints are often given with their credentials inside: ``postgres://user:pw@host/db``,
``wss://user:pass@host/?apikey=...``. Logs, ``/healthz``, ``--print-config`` and error texts show only
:func:`redact_url`'s form, where the userinfo and every query value are ``***``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with its userinfo and each query value replaced by ``***`` (scheme, host, path and keys kept)."""
    if "://" not in url:  # a plain path: nothing to hide
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL we can take apart: show none of it
        return HIDDEN
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{HIDDEN}@{host}" if "@" in parts.netloc else host
    # a key is kept (it says what was there), its value hidden; an item with no '=' may be a bare secret
    items = (item.partition("=") for item in parts.query.split("&") if item)
    query = "&".join(f"{key}={HIDDEN}" if eq else HIDDEN for key, eq, _ in items)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, say) with every occurrence of ``url`` in its redacted form."""
    return text.replace(url, redact_url(url)) if url else text
