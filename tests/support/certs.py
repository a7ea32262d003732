"""Throwaway TLS material from trustme: a CA, a server certificate it signed, an unrelated CA."""

import dataclasses
from pathlib import Path

import trustme

SERVER_IDENTITIES = ("localhost", "127.0.0.1")
"""Names the server certificate is valid for; clients may connect by either."""


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """Paths of PEM files for a TLS server and the clients that should (or should not) trust it."""

    ca_pem: Path
    server_cert_pem: Path
    server_key_pem: Path
    other_ca_pem: Path
    ca_pem_text: str


def make_tls_material(
    tmp_dir: Path, identities: tuple[str, ...] = SERVER_IDENTITIES
) -> TlsMaterial:
    """Write a CA, a server cert and key for localhost/127.0.0.1 and an unrelated CA to ``tmp_dir``.

    ``other_ca_pem`` did not sign the server certificate: a client that trusts only
    it must fail verification ("wrong CA" tests).
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*identities)
    material = TlsMaterial(
        ca_pem=tmp_dir / "ca.pem",
        server_cert_pem=tmp_dir / "server-cert.pem",
        server_key_pem=tmp_dir / "server-key.pem",
        other_ca_pem=tmp_dir / "other-ca.pem",
        ca_pem_text=ca.cert_pem.bytes().decode("ascii"),
    )
    ca.cert_pem.write_to_path(material.ca_pem)
    material.server_cert_pem.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(material.server_key_pem)
    trustme.CA().cert_pem.write_to_path(material.other_ca_pem)
    return material
