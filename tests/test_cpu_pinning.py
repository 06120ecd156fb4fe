"""The test suite computes on CPU unless the CUDA-marked tests are asked for (`pytest -m cuda`)."""

from __future__ import annotations

import os

import pytest
import torch

from tests.conftest import cuda_tests_selected


@pytest.mark.parametrize(
    "argv, addopts, selected",
    [
        ([], "", False),
        (["-m", "cuda"], "", True),
        (["-mcuda"], "", True),
        (["-m", "cuda and not slow"], "", True),
        (["-m", "not cuda"], "", False),
        (["-m", "not slow"], "", False),
        (["tests/test_cuda_things.py"], "", False),
        ([], "-m cuda", True),
    ],
)
def test_which_command_lines_select_the_cuda_tests(argv, addopts, selected):
    assert cuda_tests_selected(argv, addopts) is selected


def test_cuda_is_hidden_from_the_other_tests_and_their_subprocesses():
    # this test is not marked cuda, so it runs only when CUDA is hidden (subprocesses inherit it)
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    assert not torch.cuda.is_available()
