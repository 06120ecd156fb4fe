"""The decision rule and its kernels, below everything that uses them.

One rule everywhere: a sample goes to the absent classes U exactly when γ > its gap g = max over
the non-U columns − max over the U columns (ties between the groups stay out of U, ties within a
group go to the lowest index).

- :mod:`calib.rules.gaps`: the gaps and group argmaxes of a logit matrix (numpy or torch).
- :mod:`calib.rules.kernels`: the one-pass scans behind them (numba, numpy, torch).
- :mod:`calib.rules.numba_kernels`: the compiled scans.
- :mod:`calib.rules.keys`: exact order-preserving integer keys of floats (top-k ranks at γ).
- :mod:`calib.rules.stepmax`: the exact maximiser of a mean of step functions of γ.
- :mod:`calib.rules.torch_ops`: the rule on torch tensors (shifted logits, softmax rows).
"""
