"""PyInstaller runtime hook: give OpenSSL a CA bundle on any Linux distribution.

The bundled OpenSSL comes from the build machine (Debian) and looks for CA certificates where Debian keeps
them. The pip-installed service uses the host's own OpenSSL, which knows the host's location; so, unless
the operator chose with SSL_CERT_FILE/SSL_CERT_DIR, point OpenSSL at the host's CA bundle wherever the
distribution keeps it, and only if there is none at the CA bundle of certifi inside the binary. Without
this a ``wss://`` Crust node could not be verified on, e.g., RHEL or Fedora.
"""

import os
import ssl


def _choose_ca_bundle() -> None:
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return
    paths = ssl.get_default_verify_paths()
    if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile):
        return  # the bundled OpenSSL's own default works on this host
    for candidate in (
        "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch, Gentoo
        "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, CentOS, Fedora, Amazon Linux
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL 7+
        "/etc/ssl/ca-bundle.pem",  # openSUSE
        "/etc/ssl/cert.pem",  # Alpine, others
    ):
        if os.path.isfile(candidate):
            os.environ["SSL_CERT_FILE"] = candidate
            return
    try:
        import certifi
    except ImportError:
        return
    os.environ["SSL_CERT_FILE"] = certifi.where()


_choose_ca_bundle()
del _choose_ca_bundle
