"""Reliability figures: what is drawn comes from the diagrams, PNGs are written, bad input is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from calib.figures.files import save_figure
from calib.figures.reliability import plot_reliability, plot_reliability_groups
from calib.metrics.probability import reliability_diagram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEN = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 8)) * 2
    y = rng.integers(0, 8, size=400)
    z[np.arange(400), y] += 2.5
    z[:, :4] += 3.0  # the seen classes are inflated, as after fine-tuning
    return z, y


def diagrams(data, group, adaptive=False):
    z, y = data
    return {
        "fine-tuned": reliability_diagram(z, y, SEEN, group=group, adaptive=adaptive),
        "+ γ": reliability_diagram(z, y, SEEN, gamma=3.0, group=group, adaptive=adaptive),
        "+ γ + T": reliability_diagram(
            z, y, SEEN, gamma=3.0, temperature=1.5, group=group, adaptive=adaptive
        ),
    }


def test_draws_each_bin_of_each_series(data):
    from calib.figures.reliability import SPARSE_BIN

    series = diagrams(data, "absent")
    ax = plot_reliability(series, title="absent")
    lines = [line for line in ax.lines[1:] if line.get_label() in ax.get_legend_handles_labels()[1]]
    assert len(lines) == 3
    for line, d in zip(lines, series.values(), strict=True):
        full = d.count >= SPARSE_BIN
        # in %: the full bins joined by the series' line
        np.testing.assert_allclose(line.get_xdata(), 100 * d.confidence[full])
        np.testing.assert_allclose(line.get_ydata(), 100 * d.accuracy[full])
        assert line.get_alpha() is None  # no faint series: every one reads in print
    # sparse bins (1 to SPARSE_BIN - 1 samples) are hollow markers, on no line
    sparse_total = sum(int(((d.count > 0) & (d.count < SPARSE_BIN)).sum()) for d in series.values())
    hollow = [
        line
        for line in ax.lines
        if line.get_markerfacecolor() == "none" and line.get_linestyle() == "None"
    ]
    assert sum(len(line.get_xdata()) for line in hollow) == sparse_total
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == [f"{k} (ECE {100 * d.ece:.1f} %)" for k, d in series.items()]
    assert legend[3].startswith("hollow: bin of <")  # the key of the hollow markers
    assert ax.get_title() == f"absent (n = {series['+ γ'].n_samples})"
    assert ax.get_xlim()[1] > 100 and ax.get_ylim()[1] > 100  # no marker cut at 100 %
    # the count strip below carries one step histogram per series: shares in %, summing to 100
    strip = ax.figure.axes[1]
    assert len(strip.patches) == 3
    for patch, d in zip(strip.patches, series.values(), strict=True):
        np.testing.assert_allclose(patch.get_data().values, 100 * d.count / d.n_samples)
        np.testing.assert_array_equal(patch.get_data().edges, 100 * d.edges)
    assert strip.get_ylabel() == "samples\nper bin (%)"


def test_adaptive_bins_show_density(data):
    ax = plot_reliability(diagrams(data, "all", adaptive=True))
    assert ax.figure.axes[1].get_ylabel().startswith("density")


def test_into_given_axes_without_strip(data):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_reliability(diagrams(data, "seen"), ax=ax) is ax
    assert len(fig.axes) == 1 and ax.get_xlabel().startswith("confidence")


def test_group_figure_renders_to_png(data, tmp_path):
    groups = {g: diagrams(data, g) for g in ("all", "seen", "absent")}
    fig = plot_reliability_groups(groups, title="reliability after γ and T")
    assert len(fig.axes) == 6
    # one range for the three count strips, each labelled
    strips = fig.axes[3:]
    assert len({s.get_ylim() for s in strips}) == 1
    assert all(s.get_ylabel() for s in strips)
    path = tmp_path / "reliability.png"
    if os.environ.get("CALIB_KEEP_FIGURES"):  # to look at the figure
        path = os.path.join(os.environ["CALIB_KEEP_FIGURES"], "reliability.png")
    save_figure(fig, path)
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_MAGIC
    with Image.open(path) as im:
        assert im.size[0] > 2 * im.size[1]  # three panels side by side


def test_bad_input(data):
    with pytest.raises(ValueError, match="no reliability diagram"):
        plot_reliability({})
    with pytest.raises(TypeError, match=r"diagrams\['x'\] must be a ReliabilityDiagram"):
        plot_reliability({"x": np.zeros(3)})
    with pytest.raises(ValueError, match="no group"):
        plot_reliability_groups({})
    with pytest.raises(ValueError, match=r"diagrams\['seen'\] holds diagrams of another group"):
        plot_reliability_groups({"seen": diagrams(data, "absent")})


def test_empty_group_draws_nothing_but_does_not_fail(data):
    z, y = data
    with pytest.warns(RuntimeWarning):
        d = reliability_diagram(z, y % 4, SEEN, group="absent")
    ax = plot_reliability({"none": d})
    assert "ECE nan" in ax.get_legend().get_texts()[0].get_text()
