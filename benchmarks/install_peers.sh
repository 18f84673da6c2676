#!/usr/bin/env bash
# Install the peer hypernetwork libraries for the benchmarks into benchmarks/.peers/site
# (git-ignored), never into the package's dependencies.
#
# All three are installed with --no-deps, so pip never touches torch (the pinned CPU build
# stays): hyperlight declares torch only; hyper-nn declares flax + jax (about 600 MB) that its
# torch half does not import; hypnettorch declares nothing but needs numpy and matplotlib,
# which hyperdnn already depends on. The script checks afterwards that torch is unchanged.
#
# Usage: bash benchmarks/install_peers.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${1:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py="python3"; fi
fi
site="$here/.peers/site"
mkdir -p "$site"

torch_before="$("$py" -c 'import torch; print(torch.__version__)')"
"$py" -c 'import numpy, matplotlib' || {
  echo "install_peers: hypnettorch needs numpy and matplotlib in $py (pip install numpy matplotlib)" >&2
  exit 1
}

"$py" -m pip install --no-deps --upgrade --target "$site" \
  "hypnettorch==0.0.4" "hyperlight==0.0.5" "hyper-nn==0.2.2"

torch_after="$("$py" -c 'import torch; print(torch.__version__)')"
if [[ "$torch_before" != "$torch_after" ]]; then
  echo "install_peers: torch changed from $torch_before to $torch_after; this must not happen" >&2
  exit 1
fi
if [[ -d "$site/torch" ]]; then
  echo "install_peers: a torch copy landed in $site; remove it" >&2
  exit 1
fi
PYTHONPATH="$site" "$py" - <<'PY'
import importlib.metadata as md
import sys
for dist, mod in (("hypnettorch", "hypnettorch"), ("hyperlight", "hyperlight"), ("hyper-nn", "hypernn.torch")):
    __import__(mod)
    print(f"install_peers: {dist} {md.version(dist)} OK", file=sys.stderr)
PY
echo "install_peers: peers in $site (torch $torch_after untouched)"
