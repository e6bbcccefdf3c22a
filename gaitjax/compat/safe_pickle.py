"""Reading a torch.save pickle without running its code: only torch's tensor rebuilding, plain containers and
numpy arrays resolve to real objects; every other class (the reference's Normalizer and MinMaxScaler, or any
class a stand-alone script pickled) becomes an inert `StandIn` holding the pickled state as attributes."""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any


class StandIn:
    """A pickled instance of a class this package does not import: its state becomes attributes and no
    code of the original class runs. `pickled_name` is the class's pickled "module.name"."""

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.__dict__["pickled_args"] = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict, slots)
            state = {**(state[0] if isinstance(state[0], dict) else {}), **state[1]}
        if isinstance(state, dict):
            self.__dict__.update({str(k): v for k, v in state.items()})
        else:
            self.__dict__["pickled_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.pickled_name}>"


# Stand-ins for the reference's `data.preprocess.Normalizer` (attributes scaler, cols_to_normalize) and
# `data.scaler.MinMaxScaler` (scale_, min_, data_min_, data_max_, data_range_, feature_range, clip, ...).
KNOWN_STAND_INS = {
    (m, n): type(n, (StandIn,), {"pickled_name": f"{m}.{n}"})
    for m, n in (("data.preprocess", "Normalizer"), ("data.scaler", "MinMaxScaler"))
}
# The only globals a checkpoint may resolve to real objects: what torch.load needs to rebuild tensors, plus
# plain containers and numpy arrays/scalars. Every other global becomes a harmless StandIn class.
SAFE_GLOBALS = frozenset(
    [("collections", "OrderedDict"), ("_codecs", "encode"), ("copyreg", "_reconstructor")]
    + [("builtins", n) for n in ("set", "frozenset", "slice", "complex", "bytearray", "object")]
    + [("torch._utils", f"_rebuild_{n}") for n in ("tensor", "tensor_v2", "tensor_v3", "parameter")]
    + [("torch._utils", "_rebuild_parameter_with_state"), ("torch._tensor", "_rebuild_from_type_v2")]
    + [("torch", "Tensor"), ("torch", "Size"), ("torch", "device"), ("torch.nn.parameter", "Parameter")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [(f"numpy.{m}.multiarray", n) for m in ("core", "_core") for n in ("_reconstruct", "scalar")]
)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only SAFE_GLOBALS (and torch dtypes); any other class or callable becomes a StandIn."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        torch = sys.modules.get("torch") if module == "torch" else None
        if torch is not None and isinstance(vars(torch).get(name), torch.dtype):  # vars: no lazy imports
            return vars(torch)[name]
        if (module, name) in KNOWN_STAND_INS:
            return KNOWN_STAND_INS[(module, name)]
        cache = self.__dict__.setdefault("_stand_ins", {})
        if (module, name) not in cache:
            cache[(module, name)] = type(str(name), (StandIn,), {"pickled_name": f"{module}.{name}"})
        return cache[(module, name)]


def _restricted_load(file, **kwargs) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# What torch.load uses of its pickle_module: `Unpickler` (and `load` for the legacy file format).
RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="gaitjax_restricted_pickle", Unpickler=RestrictedUnpickler, load=_restricted_load
)
