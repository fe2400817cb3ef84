"""CLI: python -m localcluster {up,down,status,binaries,images,mlflow-stop,mlflow-start,...}.

``mlflow-backend NAME`` restarts MLflow alone on another backend (sqlite or postgres-s3);
``postgres-stop/start`` and ``s3-stop/start`` take the postgres-s3 backend's stores away and back.
"""

from __future__ import annotations

import argparse

from . import binaries, cluster, images


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description="modelyard local Kubernetes")
    outages = {"mlflow-stop": cluster.stop_mlflow, "mlflow-start": cluster.start_mlflow,
               "postgres-stop": cluster.stop_postgres, "postgres-start": cluster.start_postgres,
               "s3-stop": cluster.stop_s3, "s3-start": cluster.start_s3}
    parser.add_argument("command", choices=["up", "down", "status", "binaries", "images", "mlflow-backend",
                                            *outages])
    parser.add_argument("names", nargs="*", help=f"images: which to build (default: {' '.join(images.IMAGES)}); "
                                                 "mlflow-backend: sqlite or postgres-s3")
    parser.add_argument("--keep-data", action="store_true", help="down: keep etcd and MLflow data")
    args = parser.parse_args()
    if args.command == "up":
        cluster.up()
    elif args.command == "down":
        cluster.down(purge=not args.keep_data)
    elif args.command == "status":
        for name, alive in cluster.status().items():
            print(f"{name:<20} {'running' if alive else 'stopped'}")
    elif args.command == "images":
        images.build(args.names or None)
        for name, size in images.sizes().items():
            print(f"{images.IMAGES[name].ref:<32} {size}")
    elif args.command == "binaries":
        binaries.main()
    elif args.command == "mlflow-backend":
        if len(args.names) != 1:
            parser.error("mlflow-backend takes one backend: sqlite or postgres-s3")
        cluster.switch_mlflow_backend(args.names[0])
    else:
        outages[args.command]()


if __name__ == "__main__":
    main()
