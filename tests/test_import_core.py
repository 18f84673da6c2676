"""``import hyperdnn`` is the core alone: no runner, no plotting, no download code, no progress bars."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import sys
import torch  # torch itself may load tqdm and urllib; what hyperdnn adds is what counts

FORBIDDEN = ("matplotlib", "tqdm", "urllib.request", "http.client", "hyperdnn.experiments", "hyperdnn.data",
             "hyperdnn.methods")


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(FORBIDDEN):
            raise ImportError(f"import hyperdnn imported {name}")
        return None


for name in list(sys.modules):
    if name.startswith(FORBIDDEN):
        del sys.modules[name]
sys.meta_path.insert(0, Refuse())
import hyperdnn
print(sorted(m for m in sys.modules if m.startswith(FORBIDDEN)))
"""


def test_import_hyperdnn_loads_no_runner_plotting_download_or_progress_code() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_lazy_subpackages_load_on_first_use() -> None:
    code = "import hyperdnn, sys; hyperdnn.data; hyperdnn.methods; print('hyperdnn.data.mnist' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"


def test_the_summary_says_which_way_the_compression_ratio_reads() -> None:
    from torch import nn

    import hyperdnn as hd

    model = hd.HyperDNN(nn.Linear(4, 2), inputs=hd.TaskEmbedding(2, 3))
    text = str(model.summary())
    assert "compression ratio (hypernet / generated)" in text and "(< 1 means compressed)" in text
    s = model.summary()
    assert s.compression_ratio == s.hypernetwork / s.generated > 1  # a large H for a tiny target
