"""Adapters that express each workload with a peer library's own API.

The peers are installed by ``benchmarks/install_peers.sh`` into ``benchmarks/.peers/site``
(git-ignored); that folder is appended to ``sys.path`` here, after the venv, so the venv's
torch always wins. A peer that is not importable is reported as "missing".
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

from ..subject import Unavailable

SITE = Path(os.environ.get("HYPERDNN_BENCH_PEERS", Path(__file__).resolve().parent.parent / ".peers" / "site"))

#: distribution name, import name and pinned version of each peer
PEERS = {
    "hypnettorch": ("hypnettorch", "hypnettorch", "0.0.4"),
    "hyperlight": ("hyperlight", "hyperlight", "0.0.5"),
    "hyper-nn": ("hyper-nn", "hypernn.torch", "0.2.2"),
}


def _add_site() -> None:
    if SITE.is_dir() and str(SITE) not in sys.path:
        sys.path.append(str(SITE))
        importlib.invalidate_caches()


def import_peer(name: str) -> ModuleType:
    """Import a peer library or raise Unavailable("missing", ...)."""
    if os.environ.get("HYPERDNN_BENCH_NO_PEERS"):
        raise Unavailable("missing", f"{name}: peers disabled by HYPERDNN_BENCH_NO_PEERS")
    _add_site()
    dist, module, _ = PEERS[name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means the peer is unusable
        raise Unavailable("missing", f"{name} not importable ({type(exc).__name__}: {exc}); run benchmarks/install_peers.sh") from None


def peer_versions() -> dict[str, str]:
    """Installed version of each peer, or "missing"."""
    out = {}
    for name, (dist, _, _) in PEERS.items():
        try:
            import_peer(name)
            out[name] = importlib.metadata.version(dist)
        except (Unavailable, importlib.metadata.PackageNotFoundError):
            out[name] = "missing"
    return out
