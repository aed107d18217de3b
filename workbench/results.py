"""The result pattern every analysis follows.

A result is a dataclass holding plain data (NumPy arrays, pandas DataFrames, scalars, lists and dicts of
those) plus ``settings``: the arguments that produced it (seed, device, variant, split, ...).  Every
result can

* ``to_frame()``: a tidy :class:`pandas.DataFrame` view of its main table;
* ``save(path)`` / ``Result.load(path)``: a lossless round trip through one ``.npz`` file (arrays stored
  natively, everything else as JSON);
* be drawn by a pure function in the analysis' ``figures`` module (never by the result itself).

Subclasses are declared with ``@dataclass`` and registered automatically by their qualified name, so
``Result.load`` gives back the right class.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Dict

import numpy as np
import pandas as pd

FORMAT_VERSION = 1


def _encode(value: Any, arrays: Dict[str, np.ndarray], prefix: str) -> Any:
    """Turn ``value`` into JSON, moving arrays into ``arrays`` under unique keys."""
    if isinstance(value, Result):  # a nested result (e.g. the plane inside a landscape report)
        return {"__result__": _class_path(type(value)),
                "fields": {f.name: _encode(getattr(value, f.name), arrays, prefix)
                           for f in dataclasses.fields(value)}}
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, pd.DataFrame):
        columns = []
        for col in value.columns:
            series = value[col]
            if series.dtype.kind in "biufcmM":  # numeric and datetime columns: exact, as arrays
                columns.append({"name": _encode(col, arrays, prefix),
                                "array": _encode(series.to_numpy(), arrays, prefix)})
            else:
                columns.append({"name": _encode(col, arrays, prefix),
                                "values": [_encode(v, arrays, prefix) for v in series.tolist()],
                                "dtype": str(series.dtype)})
        return {"__frame__": columns, "index": _encode(value.index.to_numpy(), arrays, prefix)
                if value.index.dtype.kind in "biuf" else [_encode(v, arrays, prefix) for v in value.index],
                "index_name": _encode(value.index.name, arrays, prefix)}
    if isinstance(value, pd.Series):
        return {"__series__": _encode(value.to_frame(), arrays, prefix)}
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, prefix) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays, prefix) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _encode(v, arrays, prefix) for k, v in value.items()}}
        return {"__items__": [[_encode(k, arrays, prefix), _encode(v, arrays, prefix)] for k, v in value.items()]}
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # torch tensors, cupy arrays
        from .backend import to_numpy

        return _encode(to_numpy(value), arrays, prefix)
    return {"__repr__": repr(value)}


def _decode(value: Any, arrays: Dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return arrays[value["__array__"]]
    if "__result__" in value:
        return _build(_class_of(value["__result__"]), {k: _decode(v, arrays) for k, v in value["fields"].items()})
    if "__frame__" in value:
        data = {}
        for col in value["__frame__"]:
            name = _decode(col["name"], arrays)
            if "array" in col:
                data[name] = _decode(col["array"], arrays)
            else:
                vals = [_decode(v, arrays) for v in col["values"]]
                ser = pd.Series(vals, dtype=object) if col.get("dtype") == "object" else pd.Series(vals)
                data[name] = ser.to_numpy() if col.get("dtype") == "object" else ser
        index = _decode(value["index"], arrays)
        df = pd.DataFrame({k: (list(v) if isinstance(v, np.ndarray) and v.dtype == object else v)
                           for k, v in data.items()})
        df.index = pd.Index(index, name=_decode(value.get("index_name"), arrays))
        for col in value["__frame__"]:
            name = _decode(col["name"], arrays)
            if col.get("dtype") == "object":
                df[name] = pd.Series(data[name], index=df.index, dtype=object)
        return df
    if "__series__" in value:
        df = _decode(value["__series__"], arrays)
        return df.iloc[:, 0]
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__items__" in value:
        return {_decode(k, arrays) if not isinstance(k, list) else tuple(k): _decode(v, arrays)
                for k, v in value["__items__"]}
    if "__float__" in value:
        return float(value["__float__"])
    if "__repr__" in value:
        return value["__repr__"]
    return value


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class_of(path: str) -> type:
    module, qualname = path.split(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _build(cls: type, values: Dict[str, Any]) -> "Result":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclasses.dataclass
class Result:
    """Base of every analysis result.  Subclasses are dataclasses; ``settings`` is always present."""

    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)

    kind: ClassVar[str] = "result"

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - every subclass overrides
        raise NotImplementedError(f"{type(self).__name__}.to_frame")

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: os.PathLike | str) -> Path:
        """Write the result to ``path`` (one ``.npz`` file; the suffix is added when missing)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        arrays: Dict[str, np.ndarray] = {}
        fields = {f.name: _encode(getattr(self, f.name), arrays, f.name)
                  for f in dataclasses.fields(self)}
        meta = {
            "format": FORMAT_VERSION,
            "class": _class_path(type(self)),
            "fields": fields,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                                **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: os.PathLike | str) -> "Result":
        """Read a result written by :meth:`save`; returns an instance of the class that saved it."""
        path = Path(path)
        if not path.exists() and path.with_suffix(".npz").exists():
            path = path.with_suffix(".npz")
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["__meta__"]).decode())
            arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
        target = _class_of(meta["class"])
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise TypeError(f"{path} holds a {meta['class']}, not a {cls.__name__}")
        return _build(target, {k: _decode(v, arrays) for k, v in meta["fields"].items()})

    # -- display -----------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        try:
            frame = self.to_frame()
        except NotImplementedError:
            return f"<pre>{self!r}</pre>"
        head = f"<b>{type(self).__name__}</b> &mdash; " + ", ".join(
            f"{k}={v!r}" for k, v in self.settings.items() if not isinstance(v, (dict, list))
        )
        return head + frame.to_html(max_rows=30)


@dataclasses.dataclass
class FrameResult(Result):
    """A result whose table is one ``frame``: :meth:`to_frame` returns it."""

    frame: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    def to_frame(self) -> pd.DataFrame:
        return self.frame
