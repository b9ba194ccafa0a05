"""Large images in tiles: the stitched result equals the whole-image result, and no tile exceeds its size."""

import numpy as np
import pytest
from skimage.measure import label as connected_components

from tests.synthetic import disks, nucleus_image
from workflow.config import load_config
from workflow.core.images import to_rgb8
from workflow.core.metrics import score_image
from workflow.core.tiling import TilingConfig, blend_in_tiles, owned_objects, segment_in_tiles, tile_cores
from workflow.predict import build_segmenter


def grid_of_disks(shape=(300, 420), spacing=30, radius=9) -> np.ndarray:
    centres = [(y, x) for y in range(15, shape[0] - 10, spacing) for x in range(15, shape[1] - 10, spacing)]
    return disks(shape, centres, radius)


def threshold_segmenter(seen: list[tuple[int, int]]):
    """A local segmenter (threshold + connected components) that also returns the image as a float map."""

    def segment(rgb8: np.ndarray):
        seen.append(rgb8.shape[:2])
        gray = rgb8[..., 0]
        labels = connected_components(gray > 100).astype(np.int32)
        return labels, {"brightness": gray.astype(np.float32) / 255, "objects": labels}

    return segment


def test_tile_cores_cover_each_pixel_once():
    for length, tile, overlap in ((1000, 300, 60), (300, 300, 60), (301, 100, 30)):
        cores = tile_cores(length, tile, overlap)
        assert cores[0][1] == 0 and cores[-1][2] == length
        assert all(a[2] == b[1] for a, b in zip(cores, cores[1:]))
        assert all(start <= low and high <= start + tile for start, low, high in cores)


def test_owned_objects_keeps_objects_whose_centroid_is_in_the_core():
    labels = disks((60, 60), centres=((10, 10), (10, 45), (45, 30)), radius=5)
    owned = owned_objects(labels, (0, 30, 0, 30))
    assert owned.max() == 1 and (owned > 0).sum() == (labels == 1).sum()
    assert owned_objects(np.zeros((5, 5), np.int32), (0, 5, 0, 5)).max() == 0


def test_stitched_tiles_equal_the_whole_image():
    truth = grid_of_disks()
    rgb8 = to_rgb8(nucleus_image(truth))
    seen: list[tuple[int, int]] = []
    whole, whole_maps = threshold_segmenter([])(rgb8)
    labels, maps = segment_in_tiles(threshold_segmenter(seen), rgb8, tile=128, overlap=40)
    assert len(seen) > 6 and max(max(shape) for shape in seen) <= 128
    assert labels.max() == whole.max() == truth.max()
    assert score_image(whole, labels).dsb == 1.0  # every object identical, none cut or doubled
    assert np.array_equal(maps["brightness"], whole_maps["brightness"])
    assert score_image(whole, maps["objects"]).dsb == 1.0


def test_tiles_show_progress(capsys):
    rgb8 = to_rgb8(nucleus_image(grid_of_disks()))
    seen: list[tuple[int, int]] = []
    segment_in_tiles(threshold_segmenter(seen), rgb8, tile=128, overlap=40)
    bar = capsys.readouterr().err
    assert "tiles:" in bar and f"0/{len(seen)} " in bar  # a bar over all the tiles
    segment_in_tiles(threshold_segmenter([]), rgb8[:100, :100], tile=128, overlap=40)
    assert "tiles" not in capsys.readouterr().err  # one tile: no bar


def test_segmenter_tiles_a_large_image_like_the_whole(monkeypatch):
    truth = grid_of_disks((360, 480), spacing=40, radius=10)
    rgb8 = to_rgb8(nucleus_image(truth))
    whole = build_segmenter("classic", load_config(overrides=["size.diameter=20"]))(rgb8).labels
    tiled_cfg = load_config(overrides=["size.diameter=20", "tiling.tile_size=256", "tiling.overlap=96"])
    segmenter = build_segmenter("classic", tiled_cfg)
    assert TilingConfig(256, 96).original_pixels(segmenter.target_diameter / 20) == (128, 48)
    seen: list[tuple[int, int]] = []
    inner = segmenter.segment

    def spy(window, diameter):
        seen.append(window.shape[:2])
        return inner(window, diameter)

    monkeypatch.setattr(segmenter, "segment", spy)
    tiled = segmenter(rgb8).labels
    assert len(seen) == 4 * 6 and max(max(shape) for shape in seen) == 128
    assert tiled.shape == truth.shape
    assert score_image(truth, tiled).dsb == pytest.approx(score_image(truth, whole).dsb, abs=0.02)
    assert score_image(truth, tiled).ap50 == 1.0


def test_blend_in_tiles_averages_overlapping_outputs_in_batches():
    image = np.random.default_rng(0).random((300, 200, 2)).astype(np.float32)
    calls = []

    def identity(crops):
        calls.append(len(crops))
        return np.stack([crop.transpose(2, 0, 1) for crop in crops])

    blended = blend_in_tiles(identity, image, tile=128, overlap=40, batch_size=3)
    assert blended.shape == (2, 300, 200)
    np.testing.assert_allclose(blended, image.transpose(2, 0, 1), rtol=1e-6)
    assert sum(calls) == 3 * 2 and calls == [3, 3]  # 3 rows x 2 columns of tiles, 3 per call

    def position(crops):  # a tile-dependent output: overlaps get the mean of their tiles
        return np.stack([np.full((1, *crop.shape[:2]), crop[0, 0, 0]) for crop in crops])

    mixed = blend_in_tiles(position, image, tile=128, overlap=40)
    assert mixed[0, 0, 0] == image[0, 0, 0] and mixed[0, 299, 199] == image[172, 72, 0]
    assert np.isclose(mixed[0, 100, 0], (image[0, 0, 0] + image[86, 0, 0]) / 2)
