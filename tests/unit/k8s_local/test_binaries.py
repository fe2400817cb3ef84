"""Release downloads of the control-plane binaries: off unless asked for, and only with a matching checksum.

A loopback HTTP server stands in for dl.k8s.io and the etcd release page.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from localcluster import binaries

KUBECTL = b"#!/bin/sh\necho kubectl\n"
ETCD = b"#!/bin/sh\necho etcd\n"


def _etcd_archive() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"etcd-v{binaries.ETCD_VERSION}-linux-amd64/etcd")
        info.size = len(ETCD)
        tar.addfile(info, io.BytesIO(ETCD))
    return out.getvalue()


@dataclass
class Releases:
    files: dict[str, bytes]  # served by path; tests edit it
    requested: list[str]


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> Iterator[Releases]:
    archive = _etcd_archive()
    k8s = f"/k8s/v{binaries.K8S_VERSION}/bin/linux/amd64/kubectl"
    etcd = f"/etcd/v{binaries.ETCD_VERSION}"
    name = f"etcd-v{binaries.ETCD_VERSION}-linux-amd64.tar.gz"
    files = {
        k8s: KUBECTL,
        f"{k8s}.sha256": hashlib.sha256(KUBECTL).hexdigest().encode(),
        f"{etcd}/{name}": archive,
        f"{etcd}/SHA256SUMS": f"{'0' * 64}  other.tar.gz\n{hashlib.sha256(archive).hexdigest()}  {name}\n".encode(),
    }
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(binaries, "K8S_RELEASES", f"{base}/k8s")
    monkeypatch.setattr(binaries, "ETCD_RELEASES", f"{base}/etcd")
    monkeypatch.setattr(binaries.os, "uname", lambda: type("U", (), {"machine": "x86_64"})())
    yield Releases(files, requested)
    server.shutdown()


def test_nothing_is_downloaded_unless_asked(releases: Releases, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(binaries.DOWNLOAD_ENV, raising=False)
    assert not binaries._download("kubectl", tmp_path / "kubectl")
    assert releases.requested == []
    assert not (tmp_path / "kubectl").exists()


@pytest.mark.parametrize(("name", "content"), [("kubectl", KUBECTL), ("etcd", ETCD)])
def test_a_download_with_its_published_checksum_is_kept(releases: Releases, tmp_path: Path, name: str, content: bytes,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binaries.DOWNLOAD_ENV, "1")
    assert binaries._download(name, tmp_path / name)
    assert (tmp_path / name).read_bytes() == content
    assert (tmp_path / name).stat().st_mode & 0o111


@pytest.mark.parametrize("name", ["kubectl", "etcd"])
def test_a_download_whose_checksum_differs_is_dropped(releases: Releases, tmp_path: Path, name: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(binaries.DOWNLOAD_ENV, "1")
    # What is served is not what was published: a tampered or truncated file.
    for path in [p for p in releases.files if p.endswith(("/kubectl", ".tar.gz"))]:
        releases.files[path] = releases.files[path][:-1]
    assert not binaries._download(name, tmp_path / name)
    assert not (tmp_path / name).exists()
    assert "SHA-256" in capsys.readouterr().out


def test_an_unreachable_release_falls_through_to_the_build(releases: Releases, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binaries.DOWNLOAD_ENV, "1")
    del releases.files[f"/k8s/v{binaries.K8S_VERSION}/bin/linux/amd64/kubectl"]
    assert not binaries._download("kubectl", tmp_path / "kubectl")
    assert not (tmp_path / "kubectl").exists()
