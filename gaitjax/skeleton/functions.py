"""OpenSim coordinate functions (Constant, Linear, SimmSpline, NaturalCubicSpline, Polynomial, Multiplier)
evaluated in JAX, differentiable in their argument; spline coefficients are precomputed in numpy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from gaitjax.data import osim
from gaitjax.data.errors import GaitDataError


@dataclasses.dataclass(frozen=True, eq=False)
class CubicPieces:
    """Piecewise cubic y = y_i + b_i t + c_i t^2 + d_i t^3, t = x - x_i, on knots `x` [N] (coeffs [N-1]).

    Outside [x_0, x_{N-1}] the curve continues linearly with the end slopes `slope_lo`, `slope_hi`,
    as OpenSim's SimmSpline and NaturalCubicSpline do.
    """

    x: np.ndarray
    y: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    slope_lo: float
    slope_hi: float


def _divided_difference(x: np.ndarray, y: np.ndarray) -> float:
    """Highest-order divided difference f[x_0, ..., x_k]."""
    table = y.astype(np.float64).copy()
    for order in range(1, len(x)):
        table[order:] = (table[order:] - table[order - 1 : -1]) / (x[order:] - x[: len(x) - order])
    return float(table[-1])


def cubic_pieces(x: np.ndarray, y: np.ndarray, end_condition: str) -> CubicPieces:
    """Interpolating cubic spline through (x, y) by solving for the knot second derivatives M [N].

    Args:
      x: knots [N], strictly increasing.
      y: values [N].
      end_condition: "natural" (M_0 = M_{N-1} = 0) or "fmm" (Forsythe-Malcolm-Moler, used by SimmSpline:
        the end third derivatives equal those of the cubic through the 4 end knots; for N = 3 they are 0,
        which gives the parabola; N = 2 gives the line).

    Returns:
      The CubicPieces with end slopes for linear extrapolation.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.size
    h = np.diff(x)
    a = np.zeros((n, n))
    rhs = np.zeros(n)
    for i in range(1, n - 1):
        a[i, i - 1 : i + 2] = h[i - 1] / 6, (h[i - 1] + h[i]) / 3, h[i] / 6
        rhs[i] = (y[i + 1] - y[i]) / h[i] - (y[i] - y[i - 1]) / h[i - 1]
    if n == 2 or end_condition == "natural":
        a[0, 0] = a[-1, -1] = 1.0
    elif end_condition == "fmm":
        # s''' on the end interval = (M_1 - M_0) / h_0 = 6 f[x_0..x_3] (zero when only 3 knots).
        a[0, :2] = -1.0 / h[0], 1.0 / h[0]
        a[-1, -2:] = -1.0 / h[-1], 1.0 / h[-1]
        if n > 3:
            rhs[0] = 6 * _divided_difference(x[:4], y[:4])
            rhs[-1] = 6 * _divided_difference(x[-4:], y[-4:])
    else:
        raise ValueError(f"unknown end condition {end_condition!r}")
    m = np.linalg.solve(a, rhs)
    b = (y[1:] - y[:-1]) / h - h * (2 * m[:-1] + m[1:]) / 6
    c = m[:-1] / 2
    d = (m[1:] - m[:-1]) / (6 * h)
    slope_hi = b[-1] + 2 * c[-1] * h[-1] + 3 * d[-1] * h[-1] ** 2
    return CubicPieces(x, y, b, c, d, float(b[0]), float(slope_hi))


def _eval_pieces(p: CubicPieces, x: jnp.ndarray) -> jnp.ndarray:
    dtype = x.dtype
    knots = jnp.asarray(p.x, dtype)
    i = jnp.clip(jnp.searchsorted(knots, x, side="right") - 1, 0, p.x.size - 2)
    t = x - knots[i]
    inside = jnp.asarray(p.y, dtype)[i] + t * (
        jnp.asarray(p.b, dtype)[i] + t * (jnp.asarray(p.c, dtype)[i] + t * jnp.asarray(p.d, dtype)[i])
    )
    below = p.y[0] + p.slope_lo * (x - p.x[0])
    above = p.y[-1] + p.slope_hi * (x - p.x[-1])
    return jnp.where(x < p.x[0], below, jnp.where(x > p.x[-1], above, inside))


def compile_function(fn: osim.Function) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Turn a parsed OpenSim function into a JAX callable f(x [...]) -> [...] (differentiable in x).

    Raises:
      GaitDataError: for functions that forward kinematics does not evaluate (GCVSpline).
    """
    if isinstance(fn, osim.Constant):
        value = fn.value
        return lambda x: jnp.full_like(x, value)
    if isinstance(fn, osim.LinearFunction):
        slope, intercept = fn.slope, fn.intercept
        return lambda x: slope * x + intercept
    if isinstance(fn, osim.PolynomialFunction):
        coeffs = tuple(float(c) for c in fn.coefficients)

        def poly(x):
            out = jnp.zeros_like(x)
            for c in coeffs:  # Horner, highest power first (SimTK::Function::Polynomial order).
                out = out * x + c
            return out

        return poly
    if isinstance(fn, osim.SimmSpline | osim.NaturalCubicSpline):
        # OpenSim 4.6 computes NaturalCubicSpline coefficients with the same Forsythe-Malcolm-Moler end
        # conditions as SimmSpline, despite the name (checked against OpenSim FK between the knots in
        # tests/skeleton); "natural" end conditions differ from it by up to 0.08 rad there.
        pieces = cubic_pieces(fn.x, fn.y, "fmm")
        return lambda x: _eval_pieces(pieces, x)
    if isinstance(fn, osim.MultiplierFunction):
        inner, scale = compile_function(fn.function), fn.scale
        return lambda x: scale * inner(x)
    raise GaitDataError(
        f"forward kinematics cannot evaluate {type(fn).__name__} (supported: Constant, "
        "LinearFunction, SimmSpline, NaturalCubicSpline, PolynomialFunction, MultiplierFunction)"
    )
