"""``python -m modelyard_serving``: one uvicorn worker serving the configured model.

One worker per pod on purpose: Kubernetes scales by replicas (HPA), and a single process keeps
the drift window and Prometheus counters whole instead of split across workers.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from .imports import frozen_imports, import_scipy_special

# The runtime retries a failed model load itself, with capped backoff. MLflow's own per-request
# retries (7, with minutes of backoff) would only hold a failing download (an artifact store
# outage, say) for minutes before readiness can say why. Explicit settings still win.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def apply_mlflow_http_defaults(environ: MutableMapping[str, str]) -> None:
    for key, value in MLFLOW_HTTP_DEFAULTS.items():
        environ.setdefault(key, value)


def apply_env_defaults(environ: MutableMapping[str, str]) -> None:
    """The MLflow HTTP defaults, no download progress bars, and OpenBLAS single-threaded unless
    the pod says otherwise.

    OpenBLAS (NumPy and SciPy each bundle one) starts a thread per *node* core at import, not per
    core of the pod's limit, and then hands BLAS calls between them; one worker per pod, scaled by
    replicas, gains nothing from that. It reads the setting once, so this runs before anything
    imports NumPy; like OpenBLAS itself it falls back to OMP_NUM_THREADS.
    """
    apply_mlflow_http_defaults(environ)
    environ.setdefault("OPENBLAS_NUM_THREADS", environ.get("OMP_NUM_THREADS", "1"))
    # MLflow draws a tqdm progress bar per downloaded file on stderr: plain-text lines among
    # the JSON log records of every start.
    environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main() -> None:
    apply_env_defaults(os.environ)
    # Imported here, after the defaults above, and with the collector paused (imports.py).
    import_scipy_special()
    with frozen_imports():
        import uvicorn

        from .app import create_app
        from .logging import configure_logging
        from .settings import ServingSettings
    settings = ServingSettings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_config=None,  # keep the JSON handlers configure_logging installed
        access_log=False,  # ObservabilityMiddleware writes the structured access log
        server_header=False,
        # Long-lived keep-alive connections from a Service/ingress would otherwise be cut
        # every 5 s, turning into extra handshakes under steady traffic.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
