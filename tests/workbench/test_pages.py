"""Report pages, the index, tables and key findings: what a reader sees, and sentences that match their numbers."""
import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from workbench import pages
from workbench.display import FINDINGS_MIME, findings, sentence, table
from workbench.findings import Finding, fmt, pct


# ---------------------------------------------------------------------------------------------------------------
# numbers and tables
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [(0.0995390150282118, "0.0995"), (1234567, "1,234,567"), (3.0, "3"),
                                         (12345.678, "12,300"), (1070.3, "1,070"), (999.96, "1,000"),
                                         (2.5e6, "2.50e+06"), (1e-7, "1.00e-07"), (float("nan"), "n/a"),
                                         (float("inf"), "inf"), (None, "n/a"), (-0.5, "-0.5")])
def test_fmt_gives_significant_digits(value, text):
    assert fmt(value) == text


def test_pct():
    assert pct(0.3333) == "33%" and pct(0.05, 1) == "5.0%" and pct(float("nan")) == "n/a"


def test_table_formats_digits_hides_the_index_renames_and_escapes():
    frame = pd.DataFrame({"num_evals": [64, 1234], "alpha": [1.23456789, np.nan], "layer": ["<all parameters>", "a"]},
                         index=[7, 8])
    html = table(frame, columns={"num_evals": "eigenvalues"}).to_html()
    assert "eigenvalues" in html and "num_evals" not in html
    assert "1.23" in html and "1.23456789" not in html and "1,234" in html
    assert "&lt;all parameters&gt;" in html  # shown, not parsed as a tag
    assert ">7<" not in html and ">8<" not in html  # no index column
    assert "nan" not in html.lower().replace("nan-", "")


def test_table_counts_rows_left_out():
    html = table(pd.DataFrame({"x": range(100)}), max_rows=10).to_html()
    assert "90 more rows not shown" in html


def test_findings_block_carries_its_findings_as_json():
    block = findings([Finding("a", 1.0, "A is one.", weight=1)], [Finding("b", 2.0, "B is two.", weight=5)],
                     headline="Model X")
    bundle = block._repr_mimebundle_()
    data = bundle[FINDINGS_MIME]
    assert data["headline"] == "Model X" and [f["key"] for f in data["findings"]] == ["a", "b"]
    html = bundle["text/html"]
    assert html.index("B is two.") < html.index("A is one.")  # heavier first
    assert sentence(block.items, "b") == "B is two."
    with pytest.raises(KeyError, match="no finding 'c'"):
        sentence(block.items, "c")


# ---------------------------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------------------------
def _executed():
    nb = nbformat.v4.new_notebook()
    md = nbformat.v4.new_markdown_cell
    code = nbformat.v4.new_code_cell

    def out(text):
        return nbformat.v4.new_output("display_data", data={"text/plain": text})

    findings_out = nbformat.v4.new_output("display_data", data={
        "text/html": "<div>findings</div>", FINDINGS_MIME: {"title": "Key findings", "headline": "H",
                                                           "findings": [Finding("k", 1, "K is 1.").to_dict()]}})
    widget = nbformat.v4.new_output("display_data", data={pages.WIDGET_MIME: {"model_id": "x"}})
    stderr = nbformat.v4.new_output("stream", name="stderr", text="progress 10%")
    cells = [md("# Title\n\nIntro."), code("x = 1"), md("## Full section"), code("shown", outputs=[out("42"), stderr]),
             md("## Empty section\nText that would stand alone."), code("nothing", outputs=[]),
             md("## Panel"), code("panel", outputs=[widget]),
             code("findings", outputs=[findings_out])]
    cells[6].metadata["tags"] = [pages.INTERACTIVE_TAG]
    cells[7].metadata["tags"] = [pages.INTERACTIVE_TAG]
    nb.cells = cells
    return nb


def test_page_puts_findings_first_and_drops_what_a_page_cannot_use():
    page = pages.page_notebook(_executed())
    sources = ["".join(c["source"]) for c in page.cells]
    assert sources[0].startswith("# Title")
    assert "All reports" in sources[1] and "Full section" in sources[1]  # nav with contents
    assert "Empty section" not in sources[1] and not any("Empty section" in s for s in sources)
    assert not any("Text that would stand alone" in s for s in sources)
    assert not any(s == "panel" or "## Panel" in s for s in sources)  # interactive cells gone
    assert sources[2] == "findings"  # the key findings right under the title and the nav
    shown = next(c for c in page.cells if "".join(c["source"]) == "shown")
    assert [o.get("name") for o in shown["outputs"]] == [None]  # stderr dropped, the output kept
    assert "<a id='section-1'></a>" in next(s for s in sources if "## Full section" in s)


def test_summary_and_index_give_a_paragraph_per_report(tmp_path):
    nb = _executed()
    s = pages.summary_of(nb)
    assert s["title"] == "Title" and s["headline"] == "H" and s["findings"][0]["text"] == "K is 1."
    runs = [dict(notebook="a", title=s["title"], headline=s["headline"], findings=s["findings"], status="ok",
                 seconds=3.0, html="a.html", ipynb="a.ipynb", parameters={"n": 2}),
            dict(notebook="b", title="B", status="failed", error="RuntimeError: broken", html=None, parameters={})]
    page = pages.index_page(runs, "Reports")
    assert "<b>H</b> K is 1." in page and "href='a.html'" in page and "n=2" in page
    assert "failed" in page and "RuntimeError: broken" in page and "2 reports, 1 failed" in page


def test_to_html_writes_a_page_without_code(tmp_path):
    path = tmp_path / "x.ipynb"
    nbformat.write(_executed(), str(path))
    html = pages.to_html(path, tmp_path / "x.html").read_text()
    assert "All reports" in html and "<div>findings</div>" in html
    assert ">x = 1<" not in html and "progress 10%" not in html


# ---------------------------------------------------------------------------------------------------------------
# findings state the numbers of their results
# ---------------------------------------------------------------------------------------------------------------
def _spectra_result(alphas, evals):
    from workbench.spectra import SpectraResult

    t = pd.DataFrame({"name": [f"m{i}" for i in range(len(alphas))], "alpha": alphas, "num_evals": evals,
                      "stable_rank": np.arange(1.0, len(alphas) + 1)})
    return SpectraResult(settings={}, table=t, skipped=[("b", "1-D")])


def test_spectra_findings_match_the_table():
    res = _spectra_result([1.5, 3.0, 4.0, 7.5], [500, 500, 20, 500])
    f = {x.key: x for x in res.findings()}
    assert f["alpha_median"].value == pytest.approx(3.5) and "median of 3.5" in f["alpha_median"].text
    assert f["alpha_bands"].value == {"over-trained": 1, "well-trained": 2, "under-trained": 1}
    assert f["lowest_alpha"].value["name"] == "m0"
    assert f["small_fits"].value == 1 and "fewer than 50" in f["small_fits"].text


def test_landscape_slice_finding_follows_an_exact_quadratic():
    from workbench.landscape import LandscapeResult

    lam, loss0 = 2.0, 0.5
    t = np.linspace(-2, 2, 21)
    res = LandscapeResult(settings={"kind": "eigen_slice", "eigenvalue": lam, "loss0": {"train": loss0}},
                          x=t, loss={"train": loss0 + 0.5 * lam * t ** 2})
    (f,) = res.findings()
    assert f.value == pytest.approx(0.0, abs=1e-9) and "follows the quadratic model" in f.text
    assert "curvature of 2 against lambda = 2" in f.text
    cubic = LandscapeResult(settings=res.settings, x=t, loss={"train": loss0 + 0.5 * lam * t ** 2 + 3 * t ** 3},
                            )
    assert "does not follow" in cubic.findings()[0].text


def test_interpolation_finding_reads_monotonicity():
    from workbench.landscape import LandscapeResult

    a = np.linspace(-0.5, 1.5, 9)
    falls = LandscapeResult(settings={"kind": "interpolation"}, x=a, loss={"test": 2.0 - a})
    assert "falls monotonically" in falls.findings()[0].text
    bump = LandscapeResult(settings={"kind": "interpolation"}, x=a, loss={"test": 2.0 - a + 3 * (a == 0.5)})
    f = bump.findings()[0]
    assert f.value["rises"] == 1 and "not monotone" in f.text


def test_regime_findings_count_the_cells():
    from workbench import pruning

    rows = [dict(value=v, density=d, regime=r, mc=m, test_error=e)
            for (v, d, r, m, e) in [(1, 0.05, "II-A", 0.0, 0.2), (1, 0.5, "II-B", 0.0, 0.1),
                                    (10, 0.05, "I", -0.1, 0.3), (10, 0.5, "II-B", 0.01, 0.05)]]
    res = pruning.RegimeMapResult(settings={"knob": "epochs"}, frame=pd.DataFrame(rows))
    f = {x.key: x for x in res.findings()}
    assert f["regime_counts"].value == {"I": 1, "II-A": 1, "II-B": 2, "n/a": 0}
    assert f["density_contrast"].value is True and "as in the paper" in f["density_contrast"].text
    assert f["temperature_direction"].value is True and "only on the cold side" in f["temperature_direction"].text
    assert f["best_cell"].value == {"value": 10, "density": 0.5}


def test_topology_findings_compare_tc_with_degree():
    from workbench.topology.findings import topology_findings

    class Report:
        shift = {"nodes": 10, "mean_train": 0.6, "mean_test": 0.4, "fraction_train_above_test": 0.8}
        correlations = pd.DataFrame([{"target": "hits@10", "predictor": "tc_test", "spearman": 0.5, "n": 10},
                                     {"target": "hits@10", "predictor": "degree_train", "spearman": -0.2, "n": 10}])
        nodes = pd.DataFrame({"hits@10": [0.5, 1.0]})
        settings = {"model": "gcn"}

    f = {x.key: x for x in topology_findings(Report())}
    assert "better than degree" in f["tc_vs_degree"].text and "not" not in f["tc_vs_degree"].text.split(":")[1]
    assert f["distribution_shift"].value == {"train": 0.6, "test": 0.4} and "80%" in f["distribution_shift"].text
    assert f["mean_performance"].value == pytest.approx(0.75)


def test_findings_survive_json():
    f = Finding("x", {"a": 1.5}, "X.", weight=2)
    assert json.loads(json.dumps(f.to_dict())) == {"key": "x", "value": {"a": 1.5}, "text": "X.", "weight": 2}
