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

# The pod's "image" is this checkout and its venv. A volume mounted over one of their parent
# directories (an emptyDir on /tmp while the repo lives under /tmp) would hide the program
# itself, so such a mount is skipped; for /tmp the volume still becomes the pod's TMPDIR.
_HOST_CODE = [Path(sys.executable).parent.parent, Path(__file__).resolve().parents[3]]


def _hides_host_code(mount: dict[str, str], spec: dict[str, object]) -> bool:
    target = Path(mount["target"])
    if not any(code == target or target in code.parents for code in _HOST_CODE):
        return False
    print(f"local node: not mounting {target}: it would hide the program's files", file=sys.stderr)
    if str(target) == "/tmp":
        env = spec["env"]
        assert isinstance(env, dict)
        env.setdefault("TMPDIR", mount["source"])
    return True


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    # Make sure nothing we mount propagates back to the host's mount table.
    subprocess.run(["mount", "--make-rslave", "/"], check=False, capture_output=True)
    # Hold every source open before mounting anything: a volume mounted over e.g. /tmp would
    # otherwise hide the sources of later mounts that live under /tmp on the host.
    held = [(m, os.open(m["source"], os.O_PATH)) for m in spec["mounts"] if not _hides_host_code(m, spec)]
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
