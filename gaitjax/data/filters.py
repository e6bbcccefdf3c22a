"""The two signal operations of the released pipeline: zero-phase Butterworth lowpass, spline derivative.

Both run along axis 0 (time) over a whole trial; they are float64 inside, as scipy computes them.
"""

from __future__ import annotations

import numpy as np
import scipy.interpolate
import scipy.signal

from gaitjax.data.errors import GaitDataError


def lowpass(x_t: np.ndarray, cutoff_hz: float, fs_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth lowpass, `butter(order, cutoff/(fs/2))` in b/a form, then `filtfilt` with scipy defaults.

    The default padding is an odd extension of padlen = 3·max(len(a), len(b)) samples (15 for order 4), so
    the signal must be longer than that.

    Args:
        x_t: [T, ...] signal, time on axis 0.
        cutoff_hz: -3 dB cut-off of one pass, Hz.
        fs_hz: sampling rate, Hz.
        order: filter order.

    Returns:
        [T, ...] float64 filtered signal.
    """
    x_t = np.asarray(x_t)
    if not 0 < cutoff_hz < fs_hz / 2:
        raise GaitDataError(f"lowpass cut-off {cutoff_hz} Hz must lie in (0, {fs_hz / 2}) at fs = {fs_hz} Hz")
    b, a = scipy.signal.butter(order, cutoff_hz / (fs_hz / 2), "lowpass")
    padlen = 3 * max(len(a), len(b))
    if x_t.shape[0] <= padlen:
        raise GaitDataError(
            f"signal has {x_t.shape[0]} frames; the order-{order} zero-phase filter needs more than {padlen}"
        )
    return scipy.signal.filtfilt(b, a, x_t, axis=0)


def spline_derivative(x_t: np.ndarray) -> np.ndarray:
    """First derivative of the interpolating not-a-knot cubic spline through samples at u = 0 … T−1.

    This equals the released `spline_fitting_1d` (`splprep(s=0, k=3)` then `splev(der=1)`); because the
    parameter is the sample index, the result is in units per FRAME (multiply by fs for per second).

    Args:
        x_t: [T, ...] samples, T ≥ 4, time on axis 0.

    Returns:
        [T, ...] float64 derivative per frame.
    """
    x_t = np.asarray(x_t, dtype=np.float64)
    if x_t.shape[0] < 4:
        raise GaitDataError(f"spline derivative needs at least 4 frames, got {x_t.shape[0]}")
    u = np.arange(x_t.shape[0], dtype=np.float64)
    spline = scipy.interpolate.CubicSpline(u, x_t, axis=0, bc_type="not-a-knot")
    return spline(u, 1)
