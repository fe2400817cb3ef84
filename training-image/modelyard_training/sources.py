"""Fetch a dataset file's bytes: over http(s), from a mounted volume, from S3 or through DVC.

Each fetch also says where the bytes came from, for MLflow's dataset lineage: the source as it
may be shown (credentials and query strings dropped), the md5 of the content and, for DVC, the
exact git commit and the remote. S3 credentials come from the standard AWS_* variables (the
TrainingRun's credentialsSecret, through envFrom); ``endpoint`` overrides AWS_ENDPOINT_URL for
S3-compatible stores. Every failure is DatasetUnavailable (exit 3).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse, urlunparse
from urllib.request import url2pathname

from .datasetspec import DvcSource
from .errors import DatasetUnavailable

_USER_AGENT = "modelyard-training"
DEFAULT_S3_REGION = "us-east-1"


@dataclass(frozen=True)
class Fetched:
    data: bytes
    source: str
    name: str
    # Tags for mlflow.log_input: md5 of the content, plus dvc.* for DVC-tracked files.
    lineage: dict[str, str] = field(default_factory=dict)


def redact_uri(uri: str) -> str:
    """Drop credentials and query strings (presigned URLs) before a URI is logged or shown."""
    parsed = urlparse(uri)
    if not parsed.scheme or parsed.scheme == "file":
        return uri
    netloc = parsed.hostname or ""
    if parsed.port is not None:
        netloc = f"{netloc}:{parsed.port}"
    return urlunparse((parsed.scheme, netloc, parsed.path, "", "", ""))


def fetch_uri(uri: str, timeout: float, endpoint: str | None = None) -> Fetched:
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        data = _read_http(uri, timeout)
    elif scheme == "s3":
        data = _read_s3(uri, timeout, endpoint)
    else:
        data = _read_file(uri)
    name = PurePosixPath(urlparse(uri).path).stem or "dataset"
    return Fetched(data, redact_uri(uri), name, {"md5": hashlib.md5(data).hexdigest()})


def fetch_dvc(spec: DvcSource, endpoint: str | None = None) -> Fetched:
    """Read ``spec.path`` at ``spec.rev`` with DVC's Python API (one clone of the repository)."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    repo = redact_uri(spec.repo)
    where = f"spec.dataset.dvc: {spec.path} in {repo}@{spec.rev}"
    # An S3-compatible remote needs its endpoint; credentials come from the environment.
    remote_config = {"endpointurl": endpoint} if endpoint else None
    try:
        fs = DVCFileSystem(url=spec.repo, rev=spec.rev, remote=spec.remote, remote_config=remote_config)
        try:
            info = fs.info(spec.path)
            data = fs.read_bytes(spec.path)
            commit = str(fs.repo.get_rev())
        finally:
            fs.close()  # removes the temporary clone of a remote repository
    except FileNotFoundError as exc:
        raise DatasetUnavailable(f"{where}: no such file") from exc
    except (DvcException, SCMError, OSError) as exc:
        raise DatasetUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc
    lineage = {
        "md5": str(info.get("md5") or hashlib.md5(data).hexdigest()),
        "dvc.repo": repo,
        "dvc.path": spec.path,
        "dvc.rev": commit,
        "dvc.revRequested": spec.rev,
    }
    if spec.remote:
        lineage["dvc.remote"] = spec.remote
    source = f"{repo}@{commit}:{spec.path}"
    return Fetched(data, source, PurePosixPath(spec.path).stem or "dataset", lineage)


def _read_http(uri: str, timeout: float) -> bytes:
    shown = redact_uri(uri)
    request = urllib.request.Request(uri, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: GET {shown} returned HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: cannot reach {shown}: {exc.reason}") from exc
    except TimeoutError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: {shown} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: reading {shown} failed: {exc}") from exc


def _read_file(uri: str) -> bytes:
    path = Path(url2pathname(urlparse(uri).path)) if urlparse(uri).scheme.lower() == "file" else Path(uri)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: {path} does not exist (is its volume mounted?)") from exc
    except OSError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: cannot read {path}: {exc.strerror or exc}") from exc


def _read_s3(uri: str, timeout: float, endpoint: str | None) -> bytes:
    """pyarrow's S3 client (already in the image for Parquet): reads the AWS_* variables,
    AWS_ENDPOINT_URL included, unless the spec names an endpoint."""
    from pyarrow import fs

    parsed = urlparse(uri)
    key = f"{parsed.netloc}/{parsed.path.lstrip('/')}"
    # An explicit region: without one pyarrow may ask AWS where the bucket lives, which an
    # S3-compatible store on a private network cannot answer.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_S3_REGION
    try:
        s3 = fs.S3FileSystem(region=region, endpoint_override=endpoint, connect_timeout=min(timeout, 10),
                             request_timeout=timeout)
        with s3.open_input_stream(key) as stream:
            data: bytes = stream.read()
            return data
    except FileNotFoundError as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: {redact_uri(uri)} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise DatasetUnavailable(f"spec.dataset.uri: reading {redact_uri(uri)} failed: {exc}") from exc
