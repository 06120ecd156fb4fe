"""SeenAbsentState.sync() on 2 processes joined in a gloo group (CPU), as torchrun starts them:
the gathered per-sample state equals the one-process state of the whole data set, in data-set
order, for interleaved, shuffled-and-padded (with indices), contiguous and empty shards."""

from __future__ import annotations

import pytest

from tests.helpers_distributed import run_group
from tests.helpers_streaming_distributed import mismatches_are_named, sync_in_every_order


@pytest.mark.slow  # two processes: ~5 s
def test_sync_restores_the_whole_data_set_in_order():
    run_group(sync_in_every_order, 2)


@pytest.mark.slow
def test_sync_of_mismatched_states_is_refused_on_every_rank():
    run_group(mismatches_are_named, 2)
