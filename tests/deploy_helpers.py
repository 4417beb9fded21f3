"""Deployment pieces for the tests: a test CA and certificate (openssl), and Debian's nginx running the shipped
configuration (packaging/nginx/w3gate.conf) with its ports, certificate and upstreams filled in for loopback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
from helpers import REPO, free_port

SHIPPED = REPO / "packaging" / "nginx" / "w3gate.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
needs_nginx = pytest.mark.skipif(NGINX is None or shutil.which("openssl") is None,
                                 reason="nginx and openssl needed (Debian: apt-get install nginx openssl)")


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signed for localhost / 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=w3gate test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "key.pem", "-out", "cert.csr", "-subj", "/CN=localhost")
    (directory / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                                       "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid,issuer\n")
    openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "cert.pem", "-extfile", "ext.cnf")
    return directory / "ca.pem", directory / "cert.pem", directory / "key.pem"


class Nginx:
    """nginx (master and one worker) in the foreground, on 127.0.0.1:``port`` with TLS, in ``directory``."""

    def __init__(self, directory: Path, cert: Path, key: Path) -> None:
        self.dir = directory
        self.cert, self.key = cert, key
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def site(self, upstreams: Iterable[int], down: Iterable[int] = ()) -> str:
        """The shipped site configuration with this test's listen port, certificate and instances."""
        text = SHIPPED.read_text()
        down = set(down)
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s{' down' if p in down else ''};\n"
                          for p in upstreams)
        text, n = re.subn(r"(    server 127\.0\.0\.1:\d+ [^\n]*\n)+", servers, text)
        assert n == 1, "the shipped config's upstream server lines were not found"
        for pattern, value in ((r"listen 443 ssl http2;", f"listen 127.0.0.1:{self.port} ssl http2;"),
                               (r"\n *listen \[::\]:443 ssl http2;", ""),
                               (r"ssl_certificate [^;]+;", f"ssl_certificate {self.cert};"),
                               (r"ssl_certificate_key [^;]+;", f"ssl_certificate_key {self.key};")):
            text, n = re.subn(pattern, value, text)
            assert n == 1, f"{pattern!r} not found in the shipped config"
        return text

    def write(self, upstreams: Iterable[int], down: Iterable[int] = ()) -> None:
        (self.dir / "w3gate.conf").write_text(self.site(upstreams, down))
        user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers that can write the test's temp dirs
        temp = "".join(f"    {kind}_temp_path {self.dir / kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.dir / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.dir / 'nginx.pid'};\n"
            f"error_log {self.dir / 'error.log'} notice;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n    access_log {self.dir / 'access.log'};\n{temp}    include {self.dir / 'w3gate.conf'};\n}}\n"
        )

    def start(self, upstreams: Iterable[int]) -> None:
        self.write(upstreams)
        assert NGINX is not None
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                                      "-e", str(self.dir / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen:\n{self.error_log()}")

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def workers(self) -> set[int]:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return {int(pid) for pid in children}

    def reload(self, upstreams: Iterable[int], down: Iterable[int] = ()) -> None:
        """New configuration (SIGHUP); returns once the workers of the old one have finished their requests and
        exited: from then on no request goes to an instance marked ``down``."""
        assert self.proc is not None
        before = self.workers()
        self.write(upstreams, down)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = self.workers()
            if now and not now & before:
                return
            time.sleep(0.02)
        raise RuntimeError(f"nginx did not reload:\n{self.error_log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def https_client(nginx: Nginx, ca: Path, token: str | None = None, *, keepalive: bool = True,
                 local_address: str | None = None) -> httpx.Client:
    """An HTTPS client trusting only the test CA (as Kubo would trust a real one), on ``https://localhost:PORT``;
    ``local_address`` (another loopback address, e.g. 127.0.0.2) makes it a client of its own to nginx."""
    context = ssl.create_default_context(cafile=str(ca))
    limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
    headers = {"Authorization": token} if token else {}
    transport = httpx.HTTPTransport(verify=context, limits=limits, local_address=local_address)
    return httpx.Client(base_url=nginx.url + "/psa", headers=headers, timeout=30, transport=transport)
