"""The device mesh and the two sharding rules: batches over ("data", "fsdp"), parameters replicated or
fsdp-sharded along their largest divisible axis. Host numpy batches become global arrays here."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")
# Leaves smaller than this stay replicated even when fsdp > 1: sharding biases and norms saves nothing.
FSDP_MIN_ELEMENTS = 2**12


class MeshConfigError(ValueError):
    """The mesh requested by the config does not fit the devices, or the batch does not fit the mesh."""


def make_mesh(axes: Sequence[tuple[str, int]], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the mesh named by `config.mesh`, e.g. `[("data", -1), ("fsdp", 1)]`.

    Args:
      axes: (name, size) pairs; at most one size may be -1 (takes the remaining devices). The names must
        be exactly "data" and "fsdp", in that order.
      devices: devices to use (default: all global devices, `jax.devices()`).

    Returns:
      A `jax.sharding.Mesh` whose shape multiplies out to the number of devices.

    Raises:
      MeshConfigError: wrong axis names, more than one -1, or sizes that do not divide the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(str(name) for name, _ in axes)
    sizes = [int(size) for _, size in axes]
    if names != BATCH_AXES:
        raise MeshConfigError(f"config.mesh must name the axes {BATCH_AXES} in that order, got {names}")
    n_free = sizes.count(-1)
    if n_free > 1:
        raise MeshConfigError(f"config.mesh may have at most one axis of size -1, got {list(axes)}")
    fixed = int(np.prod([s for s in sizes if s != -1]))
    if fixed <= 0 or len(devices) % fixed:
        raise MeshConfigError(
            f"config.mesh {list(axes)} does not divide the {len(devices)} available devices"
        )
    sizes = [len(devices) // fixed if s == -1 else s for s in sizes]
    if int(np.prod(sizes)) != len(devices):
        raise MeshConfigError(
            f"config.mesh {list(axes)} uses {int(np.prod(sizes))} devices but {len(devices)} are available; "
            "set one axis to -1 to take the rest"
        )
    return Mesh(np.asarray(devices, dtype=object).reshape(sizes), names)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises MeshConfigError unless the global batch splits evenly over the devices and processes."""
    n_dev = mesh.devices.size
    if batch_size % n_dev:
        raise MeshConfigError(
            f"config.data.batch_size={batch_size} is not divisible by the number of devices ({n_dev}, "
            f"mesh {dict(mesh.shape)}); choose a multiple of {n_dev}"
        )
    if batch_size % jax.process_count():
        raise MeshConfigError(
            f"config.data.batch_size={batch_size} is not divisible by the {jax.process_count()} processes"
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: leading axis split over ("data", "fsdp"), all other axes whole."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of a value every device holds whole (metrics, keys, scalars)."""
    return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], fsdp_size: int) -> P:
    """The one parameter rule: shard the largest axis divisible by `fsdp_size` of an array with >= 2 axes
    and >= FSDP_MIN_ELEMENTS elements over "fsdp" (ties go to the last axis); replicate everything else.

    Args:
      shape: shape of the leaf (parameter, optimizer moment or EMA copy).
      fsdp_size: size of the mesh's "fsdp" axis.

    Returns:
      A PartitionSpec with "fsdp" on at most one axis.
    """
    if fsdp_size <= 1 or len(shape) < 2 or int(np.prod(shape)) < FSDP_MIN_ELEMENTS:
        return P()
    candidates = [(size, axis) for axis, size in enumerate(shape) if size % fsdp_size == 0]
    if not candidates:
        return P()
    _, axis = max(candidates)
    return P(*([None] * axis + ["fsdp"]))


def state_shardings(abstract_tree, mesh: Mesh):
    """Shardings for every leaf of a (train-state) pytree of arrays or ShapeDtypeStructs by `fsdp_spec`.

    Args:
      abstract_tree: pytree whose leaves have a `.shape` (e.g. the output of `jax.eval_shape`).
      mesh: the mesh from `make_mesh`.

    Returns:
      A pytree of the same structure with a NamedSharding per leaf.
    """
    fsdp_size = mesh.shape["fsdp"]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, fsdp_spec(leaf.shape, fsdp_size)), abstract_tree)


def host_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this process's slice of the batch into global arrays sharded by `batch_sharding`.

    Args:
      batch: numpy arrays whose leading axis is this process's share of the global batch
        (global batch / process count rows each).

    Returns:
      The same keys as global `jax.Array`s with leading axis = local rows x process count.
    """
    sharding = batch_sharding(mesh)
    n_proc = jax.process_count()
    return {
        name: jax.make_array_from_process_local_data(
            sharding, np.asarray(value), (np.shape(value)[0] * n_proc, *np.shape(value)[1:])
        )
        for name, value in batch.items()
    }
