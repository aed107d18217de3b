import dataclasses
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import pytest

from workbench.results import Result


@dataclasses.dataclass
class Toy(Result):
    table: pd.DataFrame = None
    values: np.ndarray = None
    ragged: List[np.ndarray] = dataclasses.field(default_factory=list)
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_frame(self):
        return self.table


def test_round_trip(tmp_path):
    table = pd.DataFrame({"name": ["a", "b"], "shape": [(3, 4), (5, 6)], "alpha": [2.5, np.nan],
                          "n": [1, 2]})
    r = Toy(settings={"seed": 3, "device": "cpu", "variant": "x", "nested": {"k": [1, 2]}},
            table=table, values=np.arange(6.0).reshape(2, 3),
            ragged=[np.ones(2), np.zeros(5)], extra={"inf": float("inf"), "t": (1, 2)})
    path = r.save(tmp_path / "toy")
    assert path.suffix == ".npz"
    back = Result.load(path)
    assert type(back) is Toy
    assert back.settings == r.settings
    pd.testing.assert_frame_equal(back.to_frame(), table)
    assert back.table["shape"].iloc[1] == (5, 6)
    np.testing.assert_array_equal(back.values, r.values)
    assert [len(a) for a in back.ragged] == [2, 5]
    assert back.extra["inf"] == float("inf") and back.extra["t"] == (1, 2)


def test_load_checks_class(tmp_path):
    r = Toy(table=pd.DataFrame({"a": [1]}))
    p = r.save(tmp_path / "x.npz")

    @dataclasses.dataclass
    class Other(Result):
        pass

    with pytest.raises(TypeError, match="holds a"):
        Other.load(p)
