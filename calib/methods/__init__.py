"""Fine-tuning methods by name: each a row of the paper's comparison.

::

    from calib.methods import METHODS
    spec = METHODS.get("wise_ft")
    spec.trains, spec.data, spec.params["alpha"]   # 'all, then weights mixed ...', 'seen', 0.5
    params = spec.check_params({"alpha": 0.3})     # ValueError naming a bad parameter / value
    model = spec.run(ctx)                          # ctx: a FinetuneContext built by the harness

Registered keys (what trains; the data; the definition followed):

- ``full``: everything; S; Mai et al., NeurIPS 2024.
- ``frozen_head``: the backbone, the head as pre-trained; S; Mai et al.'s "Frozen
  Classifier", Tu et al.'s Holistic Transfer (NeurIPS 2023).
- ``linear_probe``: the head only, the backbone (BatchNorm statistics included) fixed and in
  eval mode; S; Mai et al.'s "Linear Probing".
- ``lp_ft``: the head, then everything; S; Kumar et al., ICLR 2022.
- ``wise_ft``: everything, then θ = (1 − α)·θ_pre + α·θ_ft; S; Wortsman et al., CVPR 2022.
- ``distill_absent``: everything, CE + distillation of the pre-trained absent-class logits;
  S; Li & Hoiem's LwF (TPAMI 2017), Holistic Transfer's "preserve class relationships".
- ``lora``: low-rank adapters (+ the head), merged into plain weights; S; Hu et al., ICLR 2022.
- ``oracle_all``: everything, on S ∪ U (uses absent-class data: an upper bound); Mai et al.

Every method also takes ``head="linear" | "cosine"`` (with ``head_scale`` and
``head_scale_learnable``, :mod:`calib.methods.cosine_head`). ``lora`` needs the extra
``calib[lora]`` (peft), imported only when it runs.
"""

from calib.methods import (  # noqa: F401  (registers the methods)
    distill_absent,
    frozen_head,
    full,
    linear_probe,
    lora,
    lp_ft,
    oracle_all,
    wise_ft,
)
from calib.methods.cosine_head import CosineHead, to_cosine_head
from calib.methods.distill_absent import absent_distillation_loss
from calib.methods.params import HEAD_PARAMS
from calib.methods.spec import (
    METHODS,
    TRAINING_DATA,
    FinetuneContext,
    MethodSpec,
    TrainFn,
    dataset_labels,
    prepare_context,
    register_method,
)
from calib.methods.wise_ft import AlphaCurve, alpha_tradeoff, endpoints, interpolate_state

__all__ = [
    "TRAINING_DATA",
    "HEAD_PARAMS",
    "METHODS",
    "AlphaCurve",
    "CosineHead",
    "FinetuneContext",
    "MethodSpec",
    "TrainFn",
    "absent_distillation_loss",
    "alpha_tradeoff",
    "dataset_labels",
    "endpoints",
    "interpolate_state",
    "prepare_context",
    "register_method",
    "to_cosine_head",
]


def __getattr__(name: str):
    if name == "DATA_KINDS":  # renamed TRAINING_DATA: the spec module warns
        from calib.methods import spec

        return spec.DATA_KINDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
