"""Stage labels of workbench.progress: the description keeps each stage's name and its own step count."""
import pytest

from workbench.progress import Cancelled, Label, Progress, stage_label


def test_stage_reports_keep_the_stage_name_and_its_own_steps():
    calls = []
    with Progress(4, "landscape", lambda d, t, s: calls.append((d, t, s))) as bar:
        report = bar.stage("Hessian eigenvalues", 2)
        with Progress(60, "hessian lanczos", report) as inner:
            inner.update(2)
    done, total, desc = calls[2]  # start of the outer bar, start of the inner one, its second step
    assert (done, total) == (2 * 2 / 60, 4)
    assert desc == "Hessian eigenvalues: hessian lanczos" and isinstance(desc, Label)
    assert desc.levels == (("Hessian eigenvalues", 2, 60),)


def test_nested_stages_list_every_level_outermost_first():
    calls = []
    with Progress(2, "panel", lambda d, t, s: calls.append((d, t, s))) as bar:
        outer = bar.stage("d_int90 search")
        with Progress(10, "d_int search", outer) as search:
            with Progress(6, "sweep", search.stage("subspace training", 5)) as sweep:
                sweep.update(3)
    third = [(d, s) for d, _, s in calls if s.endswith("sweep") and s.levels[-1][1] == 3]
    assert len(third) == 1  # the sweep's third step, reported once
    done, desc = third[0]
    assert str(desc) == "d_int90 search: subspace training: sweep"
    assert desc.levels == (("d_int90 search", 2.5, 10), ("subspace training", 3, 6))
    assert done == pytest.approx(0.25)  # 2.5 of the search's 10 steps fill a quarter of the first of 2


def test_plain_descriptions_and_labels_are_strings():
    lab = stage_label("loss map", 3, 50, "landscape")
    assert lab == "loss map: landscape" and lab.levels == (("loss map", 3, 50),)
    assert stage_label("x", 1, 2, "x") == "x"  # a sub-computation named like its stage is not repeated


def test_a_cancelling_callback_stops_inside_a_stage():
    def cancel_at_half(done, total, desc):
        if getattr(desc, "levels", ()) and desc.levels[-1][1] >= 3:
            raise Cancelled("stop")

    with pytest.raises(Cancelled), Progress(2, "outer", cancel_at_half) as bar:
        with Progress(6, "inner", bar.stage("work")) as inner:
            for _ in range(6):
                inner.update()
