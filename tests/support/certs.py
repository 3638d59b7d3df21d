"""A throwaway certificate authority and a server certificate for 127.0.0.1 (openssl CLI),
for tests of TLS peers (a Mosquitto TLS listener, the engine's SIP TLS listener) that a client
verifies with `ca_file`; and client certificates from the same CA (mutual TLS)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate a client trusts (`ca_file`)
    cert: Path  # the server's certificate, signed by the CA, for IP 127.0.0.1
    key: Path  # the server's private key


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_server_certs(directory: Path, ip: str = "127.0.0.1") -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    subject = "/CN=telephony-bot test CA"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", subject, "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return TlsFiles(ca, cert, key)


def issue_server_cert(files: TlsFiles, name: str, ip: str) -> TlsFiles:
    """Another server certificate from the CA of `files`, for IP `ip` (e.g. one whose name is
    not the address a client reaches it at)."""
    directory = files.ca.parent
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey",
             str(directory / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
             "-out", str(cert))  # fmt: skip
    return TlsFiles(files.ca, cert, key)


def make_client_cert(files: TlsFiles, name: str = "client") -> tuple[Path, Path]:
    """(certificate, key) of a client, signed by the CA of `files` (made by make_server_certs)."""
    directory = files.ca.parent
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ca_key = directory / "ca.key"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-out", str(cert))  # fmt: skip
    return cert, key
