"""The two force-regression baselines the paper compares against (spec §7.5): a 1-D CNN (GroundLink)
and a two-layer LSTM (Sugai et al.). Both map [B, T, 51] kinematics to [B, T, 12] forces like the Refiner.

Parameter trees (kernels are [in, out]; torch names of the reference are not in the spec):
- CNNRegressor: conv_{0..3}/{kernel [7, in, out], bias} (= torch Conv1d weight [out, in, k] transposed
  (2, 1, 0)), dense_{0,1}/{kernel [256, 256], bias}, output/kernel [256, 12] (no bias).
- LSTMRegressor: lstm_{0,1}/{w_ih [in, 4H], w_hh [H, 4H], b_ih [4H], b_hh [4H]} (= torch weight_ih_l0.T,
  weight_hh_l0.T, bias_ih_l0, bias_hh_l0; gate order i, f, g, o as in torch), output/{kernel [76, 12], bias}.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gaitjax.models.rotary import TorchLinear, uniform_init

# Xavier-normal with gain sqrt(2) (variance = gain^2 * 2 / (fan_in + fan_out)), untruncated like torch.
_XAVIER_NORMAL_GAIN_SQRT2 = nn.initializers.variance_scaling(2.0, "fan_avg", "normal")


class CNNRegressor(nn.Module):
    """GroundLink-style CNN: 4 x [Conv1d(k=7, replicate padding) -> ELU], 2 x [Dropout -> Linear -> ELU],
    Dropout -> Linear(no bias). 983,936 parameters at the defaults.

    Attributes:
        n_out: output channels.
        conv_channels: output channels of the four convolutions.
        kernel_size: temporal kernel size (odd; padding (k - 1) / 2 each side, replicating edge frames).
        hidden: width of the dense layers.
        n_dense: number of hidden dense layers.
        dropout: dropout before each dense layer.
    """

    n_out: int = 12
    conv_channels: tuple[int, ...] = (128, 128, 256, 256)
    kernel_size: int = 7
    hidden: int = 256
    n_dense: int = 2
    dropout: float = 0.2

    @nn.compact
    def __call__(self, kin_btk: jax.Array, *, deterministic: bool) -> jax.Array:
        """Maps kinematics [B, T, K] to forces [B, T, n_out]; dropout needs the 'dropout' rng."""
        pad = (self.kernel_size - 1) // 2
        h = kin_btk
        for i, features in enumerate(self.conv_channels):
            h = jnp.pad(h, ((0, 0), (pad, pad), (0, 0)), mode="edge")
            conv = nn.Conv(
                features,
                (self.kernel_size,),
                padding="VALID",
                kernel_init=_XAVIER_NORMAL_GAIN_SQRT2,
                bias_init=nn.initializers.zeros_init(),
                name=f"conv_{i}",
            )
            h = jax.nn.elu(conv(h))
        for i in range(self.n_dense):
            h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
            dense = TorchLinear(
                self.hidden,
                kernel_init=_XAVIER_NORMAL_GAIN_SQRT2,
                bias_init=nn.initializers.zeros_init(),
                name=f"dense_{i}",
            )
            h = jax.nn.elu(dense(h))
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        return TorchLinear(self.n_out, use_bias=False, name="output")(h)


class TorchLSTM(nn.Module):
    """Single-layer unidirectional LSTM with torch.nn.LSTM's parameters, gate order and init.

    c' = f c + i g, h' = o tanh(c') with [i, f, g, o] = split(x W_ih + b_ih + h W_hh + b_hh); i, f, o
    sigmoid, g tanh. Zero initial state. All params ~ U(+-1/sqrt(H)).

    Attributes:
        hidden: hidden size H.
    """

    hidden: int

    @nn.compact
    def __call__(self, x_btk: jax.Array) -> jax.Array:
        """Runs over time: [B, T, K] -> hidden states [B, T, H]."""
        n_in, n_h = x_btk.shape[-1], self.hidden
        init = uniform_init(1.0 / math.sqrt(n_h))
        w_ih = self.param("w_ih", init, (n_in, 4 * n_h), jnp.float32)
        w_hh = self.param("w_hh", init, (n_h, 4 * n_h), jnp.float32)
        b_ih = self.param("b_ih", init, (4 * n_h,), jnp.float32)
        b_hh = self.param("b_hh", init, (4 * n_h,), jnp.float32)

        gates_in_bt4h = jnp.dot(x_btk, w_ih) + b_ih + b_hh  # input part for all frames at once

        def step(carry, gin_b4h):
            h_bh, c_bh = carry
            i, f, g, o = jnp.split(gin_b4h + jnp.dot(h_bh, w_hh), 4, axis=-1)
            c_bh = jax.nn.sigmoid(f) * c_bh + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_bh = jax.nn.sigmoid(o) * jnp.tanh(c_bh)
            return (h_bh, c_bh), h_bh

        zeros_bh = jnp.zeros((x_btk.shape[0], n_h), x_btk.dtype)
        _, h_tbh = jax.lax.scan(step, (zeros_bh, zeros_bh), jnp.swapaxes(gates_in_bt4h, 0, 1))
        return jnp.swapaxes(h_tbh, 0, 1)


class LSTMRegressor(nn.Module):
    """Sugai-style LSTM: LSTM(51->216) -> Dropout(0.2) -> LSTM(216->76) -> Dropout(0.25) -> Linear(76->12).
    322,716 parameters at the defaults (torch counts two bias vectors per LSTM).

    Attributes:
        n_out: output channels.
        hidden: hidden sizes of the stacked LSTMs.
        dropouts: dropout after each LSTM.
    """

    n_out: int = 12
    hidden: tuple[int, ...] = (216, 76)
    dropouts: tuple[float, ...] = (0.2, 0.25)

    @nn.compact
    def __call__(self, kin_btk: jax.Array, *, deterministic: bool) -> jax.Array:
        """Maps kinematics [B, T, K] to forces [B, T, n_out]; dropout needs the 'dropout' rng."""
        h = kin_btk
        for i, (n_h, rate) in enumerate(zip(self.hidden, self.dropouts, strict=True)):
            h = TorchLSTM(n_h, name=f"lstm_{i}")(h)
            h = nn.Dropout(rate)(h, deterministic=deterministic)
        return TorchLinear(self.n_out, name="output")(h)
