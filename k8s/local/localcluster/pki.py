"""Certificates and kubeconfigs for the local control plane (generated once per cluster dir)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class PKI:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def ensure(self, ips: list[str], dns: list[str]) -> None:
        if not self.path("ca.crt").exists():
            self._make_ca()
        # The serving cert is re-issued whenever the host address set changes.
        marker = self.path("apiserver.sans")
        sans = ",".join(sorted(ips + dns))
        if not marker.exists() or marker.read_text() != sans:
            self._issue("apiserver", "kube-apiserver", None, server=True, ips=ips, dns=dns)
            marker.write_text(sans)
        for name, cn, org in [
            ("admin", "modelyard-admin", "system:masters"),
            ("controller-manager", "system:kube-controller-manager", None),
            ("scheduler", "system:kube-scheduler", None),
            # the node: kubelet (Node authorizer + NodeRestriction), kube-proxy (bound by the
            # default system:node-proxier binding), CoreDNS and kwok (own RBAC, see node.py)
            ("kubelet", "system:node:modelyard-local", "system:nodes"),
            ("kube-proxy", "system:kube-proxy", None),
            ("coredns", "modelyard:coredns", None),
            ("kwok", "modelyard:kwok", None),
            # the apiserver's client identity towards kubelets (logs, exec, port-forward)
            ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
        ]:
            if not self.path(f"{name}.crt").exists():
                self._issue(name, cn, org, server=False)
        kubelet_sans = ",".join(sorted(ips))
        marker = self.path("kubelet-serving.sans")
        if not marker.exists() or marker.read_text() != kubelet_sans:
            self._issue("kubelet-serving", "system:node:modelyard-local", "system:nodes", server=True,
                        ips=ips, dns=["modelyard-local", "localhost"])
            marker.write_text(kubelet_sans)
        if not self.path("sa.key").exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_key(key, self.path("sa.key"))
            self.path("sa.pub").write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("modelyard-local-ca"))
            .issuer_name(_name("modelyard-local-ca"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_key(key, self.path("ca.key"))
        _write_cert(cert, self.path("ca.crt"))

    def _issue(
        self, name: str, cn: str, org: str | None, *, server: bool,
        ips: list[str] | None = None, dns: list[str] | None = None,
    ) -> None:
        ca_key = serialization.load_pem_private_key(self.path("ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.path("ca.crt").read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
            alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        _write_key(key, self.path(f"{name}.key"))
        _write_cert(cert, self.path(f"{name}.crt"))

    def kubeconfig(self, client: str, server: str, dest: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "modelyard-local", "cluster": {
                "server": server, "certificate-authority": str(self.path("ca.crt"))}}],
            "users": [{"name": client, "user": {
                "client-certificate": str(self.path(f"{client}.crt")),
                "client-key": str(self.path(f"{client}.key"))}}],
            "contexts": [{"name": "modelyard-local", "context": {
                "cluster": "modelyard-local", "user": client}}],
            "current-context": "modelyard-local",
        }
        dest.write_text(yaml.safe_dump(config, sort_keys=False))
        dest.chmod(0o600)
        return dest
