"""Test PKI made with the ``openssl`` command line: a CA, a server certificate for
``localhost`` / 127.0.0.1 and a client certificate signed by it, and a second, unrelated CA.

Not a test module. EC P-256 keys keep generation fast; every certificate carries the extensions
Python's strict X.509 verification wants (key identifiers, basic constraints, key usage).
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

CA_EXT = ("basicConstraints=critical,CA:TRUE\n"
          "keyUsage=critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier=hash\n")
LEAF_EXT = ("basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n")


@dataclass(frozen=True)
class PKI:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    other_client_cert: str
    other_client_key: str

    def client_context(self, cafile: str | None = None, cert: bool = False,
                       other_cert: bool = False) -> ssl.SSLContext:
        """A client context trusting ``cafile`` (our CA by default), optionally with a cert."""
        context = ssl.create_default_context(cafile=cafile or self.ca)
        if cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        if other_cert:
            context.load_cert_chain(self.other_client_cert, self.other_client_key)
        return context


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def _key(name: str, cwd: Path) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", name, cwd=cwd)


def _ca(name: str, cn: str, cwd: Path) -> None:
    _key(f"{name}.key", cwd)
    _run("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-days", "2",
         "-sha256", "-out", f"{name}.pem", "-extensions", "v3_ca_test",
         "-config", _req_config(cwd, name), cwd=cwd)


def _req_config(cwd: Path, name: str) -> str:
    path = cwd / f"{name}.cnf"
    path.write_text("[req]\ndistinguished_name = dn\n[dn]\n[v3_ca_test]\n" + CA_EXT)
    return str(path)


def _leaf(name: str, cn: str, ca: str, ext: str, cwd: Path) -> None:
    _key(f"{name}.key", cwd)
    _run("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out", f"{name}.csr",
         "-config", _req_config(cwd, name), cwd=cwd)
    (cwd / f"{name}.ext").write_text(LEAF_EXT + ext)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
         "-out", f"{name}.pem", cwd=cwd)


def make_pki(directory: Path) -> PKI:
    from outside import require_program

    require_program("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    _ca("ca", "burrowmq test CA", directory)
    _ca("other-ca", "some other CA", directory)
    _leaf("server", "localhost", "ca",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
          directory)
    _leaf("client", "test-client", "ca", "extendedKeyUsage=clientAuth\n", directory)
    _leaf("other-client", "stranger", "other-ca", "extendedKeyUsage=clientAuth\n", directory)

    def p(name: str) -> str:
        return str(directory / name)

    return PKI(ca=p("ca.pem"), server_cert=p("server.pem"), server_key=p("server.key"),
               client_cert=p("client.pem"), client_key=p("client.key"),
               other_ca=p("other-ca.pem"), other_client_cert=p("other-client.pem"),
               other_client_key=p("other-client.key"))
