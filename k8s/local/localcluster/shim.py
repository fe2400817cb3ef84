"""Runs inside the pod's namespaces: bind-mount the pod's volumes, then exec the container.

Invoked as ``python -m localcluster.shim <spec.json>`` under ``ip netns exec`` (or ``unshare
-m``), so the bind mounts live in a private mount namespace and never show on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    # Make sure nothing we mount propagates back to the host's mount table.
    subprocess.run(["mount", "--make-rslave", "/"], check=False, capture_output=True)
    # Hold every source open before mounting anything: a volume mounted over e.g. /tmp would
    # otherwise hide the sources of later mounts that live under /tmp on the host.
    held = [(m, os.open(m["source"], os.O_PATH)) for m in spec["mounts"]]
    for m, fd in held:
        source, target = Path(m["source"]), Path(m["target"])
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.touch()
        subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/fd/{fd}", str(target)], check=True)
        if m.get("readOnly"):
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=False)
    for _, fd in held:
        os.close(fd)
    if spec.get("workdir"):
        os.chdir(spec["workdir"])
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"local node: cannot exec {argv[0]}: {exc}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
