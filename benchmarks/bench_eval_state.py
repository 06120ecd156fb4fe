"""Peak RSS of calib-run's evaluation path (extraction -> selectors -> report rows -> premise)
with a wide head, eval.logits=full against state. One mode per process:

    python bench_eval_state.py MODE N C      # MODE: full | state

A linear head on random 64-d inputs stands in for the model (pre-trained and fine-tuned: two
heads); the test set has N samples, the fine-tuning set N/2 (its S rows feed ALG); S = the
first C/2 classes. Prints one JSON line: peak RSS over the process's RSS before the path (MB),
wall time, and the fine-tuned row (to check both modes agree).
"""

import json
import resource
import sys
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from calib.data import ClassSplit
from calib.extract import extract, extract_state, extraction_loader
from calib.run.report_metrics import model_metrics, premise_results
from calib.run.selector_data import fit_selector
from calib.run.stage_plan import TEST_TOPK, StateSpec

mode, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
torch.set_num_threads(1)
d = 64
seen = list(range(c // 2))
split = ClassSplit(seen, list(range(c // 2, c)), c)
x, y = torch.randn(n, d), torch.randint(0, c, (n,))
xt, yt = torch.randn(n // 2, d), torch.randint(0, c // 2, (n // 2,))  # S rows only
pre, ft = nn.Linear(d, c), nn.Linear(d, c)
with torch.no_grad():
    ft.bias[: c // 2] += 1.0
test = extraction_loader(TensorDataset(x, y), 1024, pin_memory=False)
train = extraction_loader(TensorDataset(xt, yt), 1024, pin_memory=False)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


base = rss_mb()
t0 = time.perf_counter()
if mode == "full":
    ex = {
        "pretrained_test": extract(pre, test, progress=False),
        "finetuned_test": extract(ft, test, progress=False),
        "finetuned_train": extract(ft, train, progress=False),
    }
else:
    spec = StateSpec(c, tuple(split.seen), tuple(split.absent), topk=TEST_TOPK)
    alg = StateSpec(c, tuple(split.seen), tuple(split.absent), alg=True, keep_gaps=False)
    ex = {
        "pretrained_test": extract_state(pre, test, spec.build(), progress=False),
        "finetuned_test": extract_state(ft, test, spec.build(), progress=False),
        "finetuned_train": extract_state(ft, train, alg.build(), progress=False),
    }
cals = {name: fit_selector(name, {}, split, ex, None) for name in ("alg", "prior", "oracle")}
rows = {"finetuned": model_metrics(ex["finetuned_test"], None, split)}
rows["pretrained"] = model_metrics(ex["pretrained_test"], None, split)
rows["calibrated"] = {
    k: {**model_metrics(ex["finetuned_test"], None, split, gamma=cal.gamma_), "gamma": cal.gamma_}
    for k, cal in cals.items()
}
premise = premise_results(rows, ex["pretrained_test"], ex["finetuned_test"], split)
wall = time.perf_counter() - t0
print(
    json.dumps(
        {
            "mode": mode,
            "N": n,
            "C": c,
            "logits_MB": round(
                2.5 * n * c * 4 / 1e6, 1
            ),  # float32 of the 3: 2 test + 1 train (N/2)
            "peak_over_base_MB": round(rss_mb() - base, 1),
            "base_MB": round(base, 1),
            "wall_s": round(wall, 2),
            "gammas": {k: v["gamma"] for k, v in rows["calibrated"].items()},
            "ft_acc_all": rows["finetuned"]["acc_all"],
            "ausuc": rows["finetuned"]["ausuc"],
        }
    )
)
