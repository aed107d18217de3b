import numpy as np
import pytest

from widgets.topology import TopologyPanel, metric_column
from workbench import topology as tp


def test_panel_runs_and_draws_the_library_values():
    p = TopologyPanel(graph_name="karate", k=2, model="cn", split="test", metric="tc", target="hits@10",
                      background=False)
    p.run_button.click()
    p.wait(60)
    assert p.error is None, p.error_area.value
    want = tp.analyze(tp.builtin("karate"), k=2, model="cn", ks=(5, 10, 20), seed=0, device="auto")
    ev = want.nodes[want.nodes["n_test"].notna()]
    np.testing.assert_allclose(np.asarray(p.figures["scatter"].data[0].x, float), ev["tc_test"].to_numpy())
    np.testing.assert_allclose(np.asarray(p.figures["scatter"].data[0].y, float), ev["hits@10"].to_numpy())
    # small graph: drawn, nodes coloured by the selected split's TC
    np.testing.assert_allclose(np.asarray(p.figures["overview"].data[1].marker.color, float),
                               want.nodes["tc_test"].to_numpy())
    assert "Train-TC" in p.summary.value
    c = want.correlations[want.correlations["target"] == "hits@10"]  # karate: few test nodes, a warning
    assert f"rest on {int(c['n'].max())} test nodes" in p.notice.value
    assert all(pred in p.notice.value for pred in c.loc[c["pearson_p"] < 0.05, "predictor"])
    # the correlation bars show every predictor, degree on all three splits included, with the library values
    bars = p.figures["correlations"].data[0]
    assert list(bars.x) == list(tp.PREDICTORS)
    assert {"degree_val", "degree_test", "atc_val"} <= set(bars.x)
    c = want.correlations[want.correlations["target"] == "hits@10"]
    np.testing.assert_allclose(np.asarray(bars.y, float), c["pearson"].to_numpy(), equal_nan=False)
    # changing the split / metric redraws without recomputing
    runs = p.runs
    p.widgets["split"].value = "train"
    p.widgets["metric"].value = "degree"
    assert p.runs == runs
    np.testing.assert_allclose(np.asarray(p.figures["scatter"].data[0].x, float), ev["degree_train"].to_numpy())
    np.testing.assert_allclose(np.asarray(p.figures["overview"].data[1].marker.color, float),
                               want.nodes["tc_train"].to_numpy())


def test_panel_large_graph_shows_distributions_and_given_graph():
    split = tp.split_edges(tp.builtin("random_geometric", n=600, seed=0), seed=0)
    p = TopologyPanel(graph=split, model="cn", background=False)
    p.run()
    assert p.error is None, p.error_area.value
    assert [t.type for t in p.figures["overview"].data] == ["histogram"] * 3
    assert p.result.settings["num_nodes"] == 600


def test_panel_shows_errors():
    p = TopologyPanel(graph=np.zeros((0, 2), int), background=False)
    p.run()
    assert isinstance(p.error, ValueError)
    assert "has 0 edges: too few to split" in p.error_area.value and p.status.value.startswith("Failed")


@pytest.mark.parametrize("metric,split,col", [("tc", "val", "tc_val"), ("density", "test", "density"),
                                              ("atc", "test", "atc_test")])
def test_metric_column(metric, split, col):
    assert metric_column(metric, split) == col


def test_panel_takes_graph_specs(tmp_path):
    import networkx as nx

    p = TopologyPanel(graph="les_miserables", background=False)  # a built-in name selects it
    assert p.graph is None and p.widgets["graph_name"].value == "les_miserables"
    path = tmp_path / "club.txt"
    path.write_text("".join(f"n{a} n{b}\n" for a, b in nx.karate_club_graph().edges()))  # string node ids
    p = TopologyPanel(graph=str(path), model="cn", background=False)
    assert p.widgets["graph_name"].layout.display == "none"  # the file is the graph: no dropdown
    p.run()
    assert p.error is None, p.error_area.value
    assert p.result.settings["num_nodes"] == 34 and len(p.figures["scatter"].data[0].x) > 0
    with pytest.raises(FileNotFoundError, match="not an existing file"):
        TopologyPanel(graph=str(tmp_path / "missing.txt"))
