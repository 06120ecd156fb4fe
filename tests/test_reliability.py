"""Reliability figures: what is drawn comes from the diagrams, PNGs are written, bad input is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from calib.figures.files import save_figure
from calib.figures.reliability import plot_reliability, plot_reliability_groups
from calib.figures.style import group_look
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
    series = diagrams(data, "absent")
    ax = plot_reliability(series, title="absent")
    points = [c for c in ax.collections if c.get_offsets().size]
    assert len(points) == 3
    for collection, d in zip(points, series.values(), strict=True):
        full = d.count > 0
        np.testing.assert_allclose(
            collection.get_offsets(), np.c_[d.confidence[full], d.accuracy[full]]
        )
        # marker area grows with the bin count
        sizes = collection.get_sizes()
        assert np.all(np.diff(sizes[np.argsort(d.count[full])]) >= 0)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{k} (ECE {d.ece:.3f})" for k, d in series.items()]
    assert ax.get_title() == f"absent (n = {series['+ γ'].n_samples})"
    # the series take the absent group's colour (the first at full strength)
    first = points[0].get_facecolor()[0][:3]
    from matplotlib.colors import to_rgb

    np.testing.assert_allclose(first, to_rgb(group_look("absent").color))
    # the count strip below carries one step histogram per series: shares summing to 1
    strip = ax.figure.axes[1]
    assert len(strip.patches) == 3
    for patch, d in zip(strip.patches, series.values(), strict=True):
        np.testing.assert_allclose(patch.get_data().values, d.count / d.n_samples)
        np.testing.assert_array_equal(patch.get_data().edges, d.edges)
    assert strip.get_ylabel() == "share of\nsamples"


def test_adaptive_bins_show_density(data):
    ax = plot_reliability(diagrams(data, "all", adaptive=True))
    assert ax.figure.axes[1].get_ylabel() == "density"


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
