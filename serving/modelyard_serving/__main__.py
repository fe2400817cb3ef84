"""``python -m modelyard_serving``: one uvicorn worker serving the configured model.

One worker per pod on purpose: Kubernetes scales by replicas (HPA), and a single process keeps
the drift window and Prometheus counters whole instead of split across workers.
"""

from __future__ import annotations

import uvicorn

from .app import create_app
from .logging import configure_logging
from .settings import ServingSettings


def main() -> None:
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
