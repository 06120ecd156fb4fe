"""Deprecated location: collation lives in :mod:`calib.run.collate`."""

from .run.collate import *  # noqa: F401,F403
from .run.collate import __all__  # noqa: F401
