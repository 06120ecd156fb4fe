"""Plotting: what is drawn, PNG files written atomically, torch curves, headless use."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from calib import accuracy_report
from calib.figures.files import save_figure
from calib.figures.seen_absent import plot_seen_absent_curves
from calib.figures.style import MODEL_LOOKS, SELECTOR_LOOKS
from calib.metrics.curve import curve_point, curve_xy, seen_absent_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 8))
    y = rng.integers(0, 8, size=120)
    z[np.arange(120), y] += 2.0
    z[:, :4] += 1.0  # the seen classes are inflated, as after fine-tuning
    return z, y


def test_draws_each_curve_and_point_with_its_label(logits, tmp_path):
    z, y = logits
    curve = seen_absent_curve(z, y, range(4))
    ax = plot_seen_absent_curves({"fine-tuned": curve}, points={"γ alg": (0.5, 0.25)}, title="demo")
    lines = ax.get_lines()
    x, yy = curve_xy(curve)
    np.testing.assert_array_equal(lines[0].get_xdata(), x)
    np.testing.assert_array_equal(lines[0].get_ydata(), yy)
    np.testing.assert_array_equal(lines[1].get_xydata(), [[0.5, 0.25]])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    # the uncalibrated γ = 0 point is marked too (it was not, once)
    assert legend == [f"fine-tuned (AUSUC {curve.ausuc:.3f})", "γ alg", "γ = 0 (uncalibrated)"]
    assert ax.get_title() == "demo" and ax.get_xlim() == (0.0, 1.0)

    path = tmp_path / "sub" / "curve.png"
    save_figure(ax.figure, path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()  # a whole, decodable PNG
        assert image.format == "PNG" and min(image.size) > 100
    assert os.listdir(path.parent) == ["curve.png"]  # no temporary file left behind


def test_uncalibrated_point_is_the_report_at_gamma_zero(logits):
    z, y = logits
    curves = {
        "pre-trained": seen_absent_curve(z, y, range(4)),
        "b": seen_absent_curve(-z, y, range(4)),
    }
    ax = plot_seen_absent_curves(curves, percent=True)
    marks = ax.get_lines()[-1]
    expected = []
    for zz in (z, -z):
        report = accuracy_report(zz, y, range(4), gamma=0.0)
        expected.append([100 * report["acc_seen"], 100 * report["acc_absent"]])
    np.testing.assert_allclose(marks.get_xydata(), expected)
    assert marks.get_marker() == SELECTOR_LOOKS["uncalibrated"].marker
    assert ax.get_lines()[0].get_color() == MODEL_LOOKS["pre-trained"].color  # the style's look
    assert ax.get_xlim() == (0.0, 100.0) and "%" in ax.get_xlabel()
    for gamma in (-1.0, 0.3, 2.0):  # curve_point at any γ is the report at that γ
        report = accuracy_report(z, y, range(4), gamma=gamma)
        assert curve_point(curves["pre-trained"], gamma) == (
            report["acc_seen"],
            report["acc_absent"],
        )


def test_each_selector_has_one_look_in_every_plot(logits):
    """ "prior" was a purple square in one plot and a red triangle in another; PCV hid under the oracle."""
    z, y = logits
    curve = {"fine-tuned": seen_absent_curve(z, y, range(4))}
    first = plot_seen_absent_curves(curve, {"γ prior = +1.00": (0.5, 0.5), "γ oracle": (0.6, 0.6)})
    second = plot_seen_absent_curves(
        curve, {"γ alg": (0.1, 0.1), "γ pcv": (0.6, 0.6), "γ prior": (0.5, 0.5)}
    )
    look = {}
    for ax in (first, second):
        for line in ax.get_lines()[1:-1]:
            name = line.get_label().split()[1]
            got = (line.get_marker(), line.get_color(), line.get_zorder())
            assert look.setdefault(name, got) == got
            assert got[:2] == (SELECTOR_LOOKS[name].marker, SELECTOR_LOOKS[name].color)
    assert look["pcv"][2] > look["oracle"][2]  # drawn on top of the oracle
    assert SELECTOR_LOOKS["pcv"].markersize < SELECTOR_LOOKS["oracle"].markersize  # and inside it
    named = plot_seen_absent_curves(curve, {"mine": (0.2, 0.2)}, selectors={"mine": "pcv"})
    assert named.get_lines()[1].get_marker() == SELECTOR_LOOKS["pcv"].marker


def test_torch_curves_plot_like_numpy_ones(logits, device):
    z, y = logits
    numpy_curve = seen_absent_curve(z, y, range(4))
    torch_curve = seen_absent_curve(
        torch.tensor(z, dtype=torch.float32, device=device), torch.tensor(y), range(4)
    )
    ax = plot_seen_absent_curves({"numpy": numpy_curve, "torch": torch_curve})
    a, b, marks = ax.get_lines()
    np.testing.assert_array_equal(a.get_xydata(), b.get_xydata())


def test_draws_into_a_given_axes(logits):
    from matplotlib.figure import Figure

    z, y = logits
    ax = Figure().add_subplot()
    assert plot_seen_absent_curves({"a": seen_absent_curve(z, y, range(4))}, ax=ax) is ax


def test_failed_save_keeps_the_old_file(logits, tmp_path):
    z, y = logits
    path = tmp_path / "curve.png"
    path.write_bytes(b"old")
    ax = plot_seen_absent_curves({"a": seen_absent_curve(z, y, range(4))})
    fig = ax.figure

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["curve.png"]


def test_nothing_to_plot_is_an_error():
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_seen_absent_curves({})


def test_importing_calib_plotting_does_not_import_matplotlib():
    code = "import sys, calib.figures.seen_absent; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_models_and_selectors_never_share_a_look():
    from calib.figures.style import GROUP_LOOKS

    looks = [(look.color, look.marker) for look in SELECTOR_LOOKS.values()]
    looks += [
        (look.color, look.marker) for name, look in MODEL_LOOKS.items() if name != "fine-tuned"
    ]
    assert len(set(looks)) == len(looks)
    # the fine-tuned model at γ = 0 is the uncalibrated point
    fine, uncal = MODEL_LOOKS["fine-tuned"], SELECTOR_LOOKS["uncalibrated"]
    assert (fine.color, fine.marker) == (uncal.color, uncal.marker)
    assert len({look.color for look in GROUP_LOOKS.values()}) == len(GROUP_LOOKS)


def test_figure_dpi_comes_from_the_environment(monkeypatch):
    from calib.figures.files import FIGURE_DPI, figure_dpi

    monkeypatch.delenv("CALIB_FIGURE_DPI", raising=False)
    assert figure_dpi() == FIGURE_DPI == 150
    monkeypatch.setenv("CALIB_FIGURE_DPI", "300")
    assert figure_dpi() == 300
    for bad in ("high", "0", "-5", "1.5"):
        monkeypatch.setenv("CALIB_FIGURE_DPI", bad)
        with pytest.raises(
            ValueError, match=f"CALIB_FIGURE_DPI must be a positive integer, got '{bad}'"
        ):
            figure_dpi()
