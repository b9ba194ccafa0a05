import json

import numpy as np
import optuna

from postprocess.refine import RefineParams
from postprocess.search import Case, best_params, load_cases, mean_dsb, plot_progress, save_cases, search, search_space
from tests.synthetic import disks
from workflow.core.labels import resize_labels


def cases():
    """Two images whose presegmentation is slightly too small; the U-Net knows the true extent."""
    result = []
    for centres in (((25, 25), (60, 60)), ((30, 60), (65, 25))):
        truth = disks((90, 90), centres, 11)
        shrunk = disks((90, 90), centres, 9)
        result.append(Case([shrunk, shrunk], (truth > 0).astype(np.float32), 22.0, 22.0, truth))
    return result


def test_objective_rewards_growing_to_the_unet_foreground():
    narrow = RefineParams(dilate=1, prob_th=16, min_size=10, c_area=10)
    wide = RefineParams(dilate=2, prob_th=16, min_size=10, c_area=10)
    assert mean_dsb(cases(), wide) > mean_dsb(cases(), narrow)


def test_objective_scores_at_the_image_own_resolution():
    truth = disks((45, 45), ((12, 12), (30, 30)), 6)
    common = truth.repeat(2, axis=0).repeat(2, axis=1)  # the same nuclei at the 2x common resolution
    case = Case([common], (common > 0).astype(np.float32), 12.0, 24.0, truth)
    keep = RefineParams(erode=0, dilate=0, min_size=10, min_overlap=0, c_area=10)
    assert mean_dsb([case], keep) > 0.9  # scored after bringing the labels back to the truth's 45 x 45


def test_objective_smooths_outlines_as_the_product_does():
    rows, cols = np.mgrid[:128, :128]
    truth = ((rows - 63.5) ** 2 + (cols - 63.5) ** 2 < 24**2).astype(np.int32)
    common = resize_labels(truth, (32, 32))  # the nucleus at 1/4 resolution: a staircase when brought back
    case = Case([common], (common > 0).astype(np.float32), 48.0, 12.0, truth)
    keep = RefineParams(erode=0, dilate=0, min_size=10, min_overlap=0, c_area=10)
    assert mean_dsb([case], keep, contour_sigma=1.0) == 1.0 > mean_dsb([case], keep)


def test_search_stores_resumes_and_reports(tmp_path):
    save_cases(tmp_path / "cache.pkl", cases())
    assert load_cases(tmp_path / "cache.pkl")[0].probability.dtype == np.float16
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = search(tmp_path / "cache.pkl", storage, trials=6, jobs=2, seed=3)
    assert len(study.trials) == 6
    assert study.trials[0].params["scale_th"] == RefineParams().scale_th  # reference defaults tried first
    study = search(tmp_path / "cache.pkl", storage, trials=4, jobs=1, contour_sigma=1.0)
    assert len(study.trials) == 10  # resumed, not restarted
    assert study.trials[-1].value == mean_dsb(load_cases(tmp_path / "cache.pkl"), RefineParams(**study.trials[-1].params), 1.0)
    params, summary = best_params(study)
    assert summary["trials"] == 10 and summary["mean_dsb"] == max(t.value for t in study.trials)
    json.dumps(params.to_dict())
    plot_progress(study, tmp_path / "progress.png")
    assert (tmp_path / "progress.png").read_bytes()[:4] == b"\x89PNG"
    assert isinstance(optuna.load_study(study_name="nucflow-postprocess", storage=storage), optuna.Study)


def test_search_tries_each_starting_point_once(tmp_path):
    save_cases(tmp_path / "cache.pkl", cases())
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    in_use = RefineParams(dilate=2, prob_th=16, min_size=30, c_area=10)
    study = search(tmp_path / "cache.pkl", storage, trials=3, jobs=1, starts=(RefineParams(), in_use))
    assert [t.params["dilate"] for t in study.trials[:2]] == [RefineParams().dilate, 2]
    assert study.trials[1].value == mean_dsb(cases(), in_use) and len(study.trials) == 3
    study = search(tmp_path / "cache.pkl", storage, trials=2, jobs=1, starts=(RefineParams(), in_use))
    assert len(study.trials) == 5 and sum(t.params == study.trials[1].params for t in study.trials) == 1  # not tried again
    assert best_params(study)[1]["mean_dsb"] >= mean_dsb(cases(), in_use)


def test_centerness_parameters_are_searched_only_with_centerness_maps(tmp_path):
    plain = cases()
    assert "add_th" not in search_space(plain)
    with_maps = [Case(c.scales, c.probability, c.diameter, c.target_diameter, c.truth, (c.truth > 0).astype(np.float32)) for c in plain]
    assert {"add_th", "seed_th"} <= set(search_space(with_maps)) and "add_th" not in search_space(plain[:1] + with_maps[1:])
    save_cases(tmp_path / "cache.pkl", with_maps)
    assert load_cases(tmp_path / "cache.pkl")[0].centerness.dtype == np.float16
    study = search(tmp_path / "cache.pkl", f"sqlite:///{tmp_path / 'study.db'}", trials=3, jobs=1)
    assert study.trials[0].params["add_th"] == 0.0 and "seed_th" in study.trials[2].params
