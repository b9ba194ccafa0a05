"""Optuna (TPE) search of the refinement parameters for the mean DSB score (the 9 of the
reference, and nucflow's centerness pair when the cached outputs have centerness maps).

The network outputs of each validation image are computed once by the caller and
passed in as `Case`s (or a cache file of them); trials only re-run the cheap `refine`.
Studies live in any Optuna storage (SQLite by default), so a search resumes and several
processes or machines can share one study; workers run in parallel through joblib.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import optuna

from postprocess.refine import CENTERNESS_SEARCH_SPACE, SEARCH_SPACE, RefineParams, refine
from workflow.core.labels import resize_labels
from workflow.core.metrics import score_image

log = logging.getLogger(__name__)
INTEGER_PARAMETERS = {"prob_th", "erode", "dilate", "min_size", "min_overlap", "max_v", "c_area"}


@dataclass
class Case:
    """One validation image's cached network outputs (at the common resolution) and its ground
    truth at the image's own resolution, where the refined labels are scored, as in use.
    """

    scales: list[np.ndarray]
    probability: np.ndarray
    diameter: float | None
    target_diameter: float
    truth: np.ndarray
    centerness: np.ndarray | None = None


def save_cases(path: str | Path, cases: list[Case]) -> None:
    """Write the cache of network outputs (probability maps as float16 to halve its size)."""
    for case in cases:
        case.probability = case.probability.astype(np.float16)
        if case.centerness is not None:
            case.centerness = case.centerness.astype(np.float16)
    with open(path, "wb") as handle:
        pickle.dump(cases, handle, protocol=pickle.HIGHEST_PROTOCOL)


def load_cases(path: str | Path) -> list[Case]:
    with open(path, "rb") as handle:
        return pickle.load(handle)


def mean_dsb(cases: list[Case], params: RefineParams, contour_sigma: float = 0.0) -> float:
    """The objective: mean DSB score of `refine` with `params` over the cases, at each image's own
    size (outlines smoothed by `contour_sigma` common-resolution pixels on the way, as in use)."""
    scores = []
    for c in cases:
        centerness = c.centerness.astype(np.float32) if c.centerness is not None else None
        labels = refine(c.scales, c.probability.astype(np.float32), c.diameter, c.target_diameter, params, centerness)
        scores.append(score_image(c.truth, resize_labels(labels, c.truth.shape, contour_sigma)).dsb)
    return float(np.mean(scores))


def search_space(cases: list[Case]) -> dict[str, tuple[float, float]]:
    """The reference's space, with the centerness parameters when every case has a centerness map."""
    with_centerness = bool(cases) and all(c.centerness is not None for c in cases)
    return {**SEARCH_SPACE, **(CENTERNESS_SEARCH_SPACE if with_centerness else {})}


def suggest(trial: optuna.Trial, space: dict[str, tuple[float, float]]) -> RefineParams:
    """One point of the search `space`."""
    values = {
        name: trial.suggest_int(name, int(low), int(high)) if name in INTEGER_PARAMETERS else trial.suggest_float(name, low, high)
        for name, (low, high) in space.items()
    }
    return RefineParams(**values)


def _worker(cache_path: str, storage: str, study_name: str, trials: int, timeout: float | None, seed: int, contour_sigma: float) -> None:
    cases = load_cases(cache_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.TPESampler(seed=seed))
    space = search_space(cases)
    study.optimize(lambda trial: mean_dsb(cases, suggest(trial, space), contour_sigma), n_trials=trials, timeout=timeout)


def search(
    cache_path: str | Path,
    storage: str,
    study_name: str = "nucflow-postprocess",
    trials: int = 100,
    timeout_minutes: float | None = None,
    jobs: int = 1,
    seed: int = 0,
    contour_sigma: float = 0.0,
    starts: tuple[RefineParams, ...] = (RefineParams(),),
) -> optuna.Study:
    """Run (or resume) the study until `trials` more trials or the time limit, over `jobs` workers.

    Each of `starts` (the reference defaults; `param-search` adds the parameters in use) is
    tried first unless the study has tried it, so the result is never worse than any of them;
    they run here before the workers start, since parallel workers may race for a queued trial.
    """
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    if trials > 0:
        cases = load_cases(cache_path)
        space = search_space(cases)
        tried = [trial.params for trial in study.trials]
        for start in starts:
            point = {name: value for name, value in start.to_dict().items() if name in space}
            if trials > 0 and point not in tried:
                study.enqueue_trial(point)
                study.optimize(lambda trial: mean_dsb(cases, suggest(trial, space), contour_sigma), n_trials=1)
                tried.append(point)
                trials -= 1
    per_worker = [trials // jobs + (1 if k < trials % jobs else 0) for k in range(jobs)]
    timeout = timeout_minutes * 60 if timeout_minutes else None
    joblib.Parallel(n_jobs=jobs)(
        joblib.delayed(_worker)(str(cache_path), storage, study_name, n, timeout, seed + k, contour_sigma) for k, n in enumerate(per_worker) if n
    )
    return optuna.load_study(study_name=study_name, storage=storage)


def best_params(study: optuna.Study) -> tuple[RefineParams, dict]:
    """The best parameters and a summary (score, trials) for `best_params.json`."""
    best = study.best_trial
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = {"mean_dsb": best.value, "trials": len(finished), "best_trial": best.number}
    return RefineParams(**best.params), summary


def plot_progress(study: optuna.Study, path: str | Path) -> None:
    """PNG of each trial's score and the best so far, over trial number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = sorted((t.number, t.value) for t in study.trials if t.value is not None)
    numbers, values = zip(*finished) if finished else ((), ())
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot(numbers, values, ".", color="0.6", label="trial")
    axis.plot(numbers, np.maximum.accumulate(values) if values else (), "-", color="C0", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel("mean DSB score")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
