"""Whether a live object already is what the operator would apply (pure, no I/O).

``kube.apply`` asks this before each server-side apply, so a resync that changes nothing sends
no write at all. Two checks, both needed:

- The fingerprint of the desired object, stored in an annotation by the previous apply, must
  match. This catches fields the operator *stopped* setting (a GPU limit dropped, a preStop
  hook removed): a server-side apply would remove them, and a subset check cannot see them.
- Every field the desired object sets must hold the same value in the live object. This
  catches drift (``kubectl edit`` of a field we own), which the old always-apply took back at
  the next resync, and still does.

Fields others added (defaults, the deployment controller's annotations, an HPA's replica
count) are ignored, as a server-side apply would leave them alone too. When in doubt the
answer is "changed": a needless apply costs one request, a wrong skip would hide a change.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

APPLIED_ANNOTATION = "modelyard.io/applied"

# Resource quantities are canonicalised by the API server ("0.5" is stored as "500m"), so a
# plain string comparison would see a change on every resync.
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
_QUANTITY_MAPS = frozenset({"requests", "limits"})


def fingerprint(obj: dict[str, Any]) -> str:
    """A short, stable digest of ``obj`` (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stamped(obj: dict[str, Any], digest: str) -> dict[str, Any]:
    """A copy of ``obj`` carrying ``digest`` in the applied annotation (shallow where safe)."""
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_ANNOTATION: digest}
    return {**obj, "metadata": meta}


def unchanged(desired: dict[str, Any], live: dict[str, Any] | None, digest: str | None = None) -> bool:
    """True when applying ``desired`` (unstamped; ``digest`` its fingerprint if known) to
    ``live`` would change nothing we own."""
    if live is None:
        return False
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(APPLIED_ANNOTATION) != (digest or fingerprint(desired)):
        return False
    return covers(desired, live)


def covers(desired: Any, live: Any) -> bool:
    """Whether ``live`` holds every value ``desired`` sets (extra keys in ``live`` are fine).

    Lists must have the same length and match item by item: an extra item in a list we set
    means someone replaced it, which the apply would take back.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(
            live.get(k) is None if v is None
            else k in live and (_same_quantities(v, live[k]) if k in _QUANTITY_MAPS
                                else covers(v, live[k]))
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(covers(d, v) for d, v in zip(desired, live, strict=True))
    return bool(desired == live)


def _same_quantities(desired: Any, live: Any) -> bool:
    """A requests/limits map: values compare as quantities ("0.5" == "500m", 1 == "1")."""
    if not isinstance(desired, dict) or not isinstance(live, dict):
        return covers(desired, live)
    return all(k in live and (v == live[k] or _same_quantity(v, live[k]))
               for k, v in desired.items())


def _same_quantity(desired: Any, live: Any) -> bool:
    a, b = _quantity(desired), _quantity(live)
    return a is not None and a == b


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value))
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation:
        return None
