"""The dataset registry: a config names a key, the builder returns a :class:`~calib.data.Domain`.

Keys: ``digits`` and ``mnist5k`` (offline demo domains), ``office_home``, ``imagenet_r``,
``imagenet_s``, ``vtab`` and ``image_list`` (image lists under a root). Builders register
themselves where they are defined (``calib.data.digits``, ``calib.data.benchmarks``,
``calib.data.vtab``); importing
:mod:`calib.data` registers them all. Builders of on-disk datasets check the files
(:func:`~calib.data.check_layout`) before returning, so a missing dataset fails at start.
"""

from __future__ import annotations

from collections.abc import Callable

from calib.data.domain import Domain
from calib.registry import Registry

__all__ = ["DATASETS", "build_domain"]

DATASETS: Registry[Callable[..., Domain]] = Registry("dataset")


def build_domain(name: str, /, **kwargs) -> Domain:
    """Build the domain registered under ``name`` with the builder's keyword arguments."""
    return DATASETS.get(name)(**kwargs)
