"""bench/feature_vis.py's pure helpers: which run gets the extra steps at equal time, the
extrapolated share of a check, and the figures read off a result.json."""

from __future__ import annotations

import math

import pytest

from bench.feature_vis import equal_time_steps, run_figures, share_at_steps


def test_the_cheaper_step_gets_the_steps_the_other_ran_in_its_time():
    # maco 0.3 s/step x 32 steps = 9.6 s, in which fft at 0.2 s/step runs 48 steps.
    assert equal_time_steps(32, maco_step=0.3, fft_step=0.2) == ("fft", 48)
    # fft 0.5 s/step x 32 = 16 s, in which maco at 0.25 s/step runs 64 steps.
    assert equal_time_steps(32, maco_step=0.25, fft_step=0.5) == ("maco", 64)
    # within 10% of each other: equal steps are equal time already.
    assert equal_time_steps(32, maco_step=1.05, fft_step=1.0) is None
    with pytest.raises(ValueError):
        equal_time_steps(32, maco_step=0.0, fft_step=1.0)


def test_share_at_other_steps_rescales_only_the_render():
    # 100 s job, 60 s of it rendering 30 steps at 2 s; at 256 steps: 40 + 512 = 552 s.
    assert share_at_steps(total=100.0, render=60.0, step=2.0, part=5.5, steps=256) == pytest.approx(5.5 / 552.0)


def test_run_figures_reads_result_json():
    document = {
        "images": [
            {"ratio_to_dataset_max": 0.5, "path_similarity": 0.4, "path_flagged": False},
            {"ratio_to_dataset_max": 1.5, "path_similarity": 0.1, "path_flagged": True},
            {"ratio_to_dataset_max": None, "path_similarity": None, "path_flagged": None},
        ],
        "trust": {"path_similarity": {"seconds": 2.0, "units": [{"random_baseline": 0.2}, {"random_baseline": 0.3}]}},
        "timing": {"step_seconds": 0.25, "render_seconds": 8.0},
        "params": {"steps": 32, "lr": 0.2},
    }
    figures = run_figures(document, wall=20.0)
    assert figures["ratio"] == pytest.approx(1.0) and figures["path"] == pytest.approx(0.25)
    assert figures["baseline"] == pytest.approx(0.25) and figures["flagged"] == 1 and figures["images"] == 3
    assert (figures["step"], figures["render"], figures["path_seconds"], figures["wall"]) == (0.25, 8.0, 2.0, 20.0)
    empty = run_figures({**document, "trust": {"path_similarity": {"computed": False}}}, wall=1.0)
    assert math.isnan(empty["baseline"]) and math.isnan(empty["path_seconds"])
