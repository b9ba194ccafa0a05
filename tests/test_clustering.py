"""Style clustering: descriptors, k by silhouette, exemplars, and the `nucflow cluster` outputs."""

import csv

import cv2
import numpy as np
import pytest

from clustering.config import ClusterConfig
from clustering.features import FEATURE_NAMES, style_features
from clustering.kmeans import cluster_styles
from tests.synthetic import disks, nucleus_image
from workflow.cli import main


def random_labels(seed, shape=(160, 200)):
    rng = np.random.default_rng(seed)
    return disks(shape, [tuple(c) for c in rng.integers(15, min(shape) - 15, (6, 2))], int(rng.integers(7, 12)))


def fluorescence(seed):
    """Gray: bright nuclei on a dark background."""
    return np.repeat(nucleus_image(random_labels(seed), seed)[:, :, None], 3, axis=2)


def stained(seed):
    """H&E-like: purple nuclei on a pink, textured background."""
    rng = np.random.default_rng(seed)
    nuclei = random_labels(seed) > 0
    image = np.empty(nuclei.shape + (3,))
    image[:] = (235, 180, 210)
    image[nuclei] = (110, 60, 150)
    return np.clip(image + rng.normal(0, 18, image.shape), 0, 255).astype(np.uint8)


def test_descriptor_is_finite_even_for_a_constant_image():
    flat = style_features(np.full((50, 60, 3), 7, np.uint8))
    assert flat.shape == (len(FEATURE_NAMES),) and np.all(np.isfinite(flat))
    assert not np.allclose(style_features(fluorescence(0)), style_features(stained(0)))


def test_two_styles_are_found_and_separated():
    features = np.array([style_features(make(seed)) for make in (fluorescence, stained) for seed in range(5)])
    result = cluster_styles(features, ClusterConfig(exemplars=2))
    assert result.k == 2 and set(result.silhouettes) == set(range(2, 9))
    assert len(set(result.labels[:5])) == 1 and len(set(result.labels[5:])) == 1 and result.labels[0] != result.labels[5]
    assert result.exemplar.sum() == 4
    for cluster in range(2):  # exemplars are the members nearest their centre
        members = result.labels == cluster
        assert result.distances[members & result.exemplar].max() <= result.distances[members & ~result.exemplar].min()


def test_one_image_is_one_cluster_and_k_can_be_given():
    single = cluster_styles(style_features(stained(1))[None], ClusterConfig())
    assert single.k == 1 and single.exemplar.tolist() == [True]
    features = np.array([style_features(fluorescence(seed)) for seed in range(6)])
    assert cluster_styles(features, ClusterConfig(k=3)).k == 3


def test_cluster_command_writes_table_and_contact_sheets(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(4):
        cv2.imwrite(str(images / f"fluo{seed}.png"), fluorescence(seed)[:, :, 0])
        cv2.imwrite(str(images / f"he{seed}.png"), stained(seed)[:, :, ::-1])
    (images / "broken.png").write_text("no image")
    out = tmp_path / "out"
    assert main(["cluster", str(images), "-o", str(out)]) == 1  # the unreadable file is reported, the rest clustered
    assert "broken.png" in caplog.text
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    assert len(rows) == 8 and list(rows[0]) == ["image", "cluster", "distance", "exemplar"]
    by_style = {prefix: {r["cluster"] for r in rows if r["image"].startswith(prefix)} for prefix in ("fluo", "he")}
    assert len(by_style["fluo"]) == 1 and len(by_style["he"]) == 1 and by_style["fluo"] != by_style["he"]
    sheets = sorted(out.glob("contact_sheet_*.png"))
    assert len(sheets) == 2 and cv2.imread(str(sheets[0])).shape[0] >= 128
    assert (out / "features.csv").is_file() and (out / "config.json").is_file()
    assert main(["cluster", str(images), "-o", str(tmp_path / "o2"), "--k", "0"]) == 2


@pytest.mark.parametrize("k", [1, 3])
def test_cluster_command_takes_k(tmp_path, k):
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(5):
        cv2.imwrite(str(images / f"im{seed}.png"), stained(seed))
    assert main(["cluster", str(images), "-o", str(tmp_path / "out"), "--k", str(k)]) == 0
    assert len({r["cluster"] for r in csv.DictReader((tmp_path / "out" / "clusters.csv").open())}) == k
