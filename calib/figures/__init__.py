"""Figures of calib runs: each a pure compute function (numbers) plus a drawing helper.

The drawing helpers take the compute functions' outputs and draw with matplotlib, imported
inside the functions (headless, no pyplot). :mod:`calib.figures.style` fixes one colour and
marker per selector, model and class group, so a series looks the same in every figure.
"""
