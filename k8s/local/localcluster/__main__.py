"""CLI: python -m localcluster {up,down,status,binaries,images,mlflow-stop,mlflow-start}."""

from __future__ import annotations

import argparse

from . import binaries, cluster, images


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description="modelyard local Kubernetes")
    parser.add_argument("command", choices=["up", "down", "status", "binaries", "images", "mlflow-stop",
                                            "mlflow-start"])
    parser.add_argument("names", nargs="*", help=f"images: which to build (default: {' '.join(images.IMAGES)})")
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
    elif args.command == "mlflow-stop":
        cluster.stop_mlflow()
    else:
        cluster.start_mlflow()


if __name__ == "__main__":
    main()
