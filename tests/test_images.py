import re

import cv2
import numpy as np
import pytest
import tifffile

from workflow.core.files import InputError, gather_images, list_images
from workflow.core.images import InputConfig, display_rgb8, has_dark_nuclei, read_image, resize_image, size_scale, to_rgb8


def write_png(path, array):
    """Write via OpenCV, which expects BGR(A) order."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_gray_8bit_reads_as_2d(tmp_path, rng, suffix):
    image = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    path = tmp_path / f"a{suffix}"
    tifffile.imwrite(path, image) if suffix == ".tif" else write_png(path, image)
    out = read_image(path)
    assert out.shape == (20, 30) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, image)


def test_rgb_png_keeps_rgb_order(tmp_path):
    image = np.zeros((10, 12, 3), np.uint8)
    image[..., 0] = 200  # red
    write_png(tmp_path / "red.png", image)
    out = read_image(tmp_path / "red.png")
    assert out.shape == (10, 12, 3)
    assert out[..., 0].min() == 200 and out[..., 1:].max() == 0


def test_rgba_png_and_alpha_dropped_for_network(tmp_path):
    image = np.zeros((10, 12, 4), np.uint8)
    image[..., 1] = 90
    image[..., 3] = 255
    write_png(tmp_path / "rgba.png", image)
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (10, 12, 4)
    net = to_rgb8(out)
    assert net.shape == (10, 12, 3) and net.dtype == np.uint8
    assert net[..., 1].min() == 90  # 8-bit as it is by default
    stretched = to_rgb8(out, InputConfig(stretch_8bit=True))
    assert stretched[..., 1].min() == 255 and stretched[..., 0].max() == 0  # stretched by the colour channels alone (alpha 255 left out)


def test_jpeg_reads(tmp_path, rng):
    image = np.full((16, 16, 3), 120, np.uint8)
    write_png(tmp_path / "a.jpg", image)
    out = read_image(tmp_path / "a.jpg")
    assert out.shape == (16, 16, 3) and abs(int(out.mean()) - 120) <= 2


def test_16bit_png_and_tiff_are_stretched_per_channel(tmp_path, rng):
    image = rng.integers(1000, 3000, (40, 40), dtype=np.uint16)
    write_png(tmp_path / "a.png", image)
    tifffile.imwrite(tmp_path / "a.tif", image)
    for name in ("a.png", "a.tif"):
        out = read_image(tmp_path / name)
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, image)
        net = to_rgb8(out)
        assert net.shape == (40, 40, 3) and net.dtype == np.uint8
        assert net.min() == 0 and net.max() == 255  # dim 16-bit data uses the full 8-bit range
        np.testing.assert_array_equal(net[..., 0], net[..., 2])


def test_16bit_rgb_tiff_stretches_channels_independently_when_asked(tmp_path):
    image = np.zeros((8, 8, 3), np.uint16)
    image[..., 0] = np.arange(64).reshape(8, 8) * 10
    image[..., 1] = np.arange(64).reshape(8, 8) * 1000
    out = to_rgb8(read_image(_tiff(tmp_path / "rgb.tif", image)), InputConfig(stretch_percentiles=(0, 100), per_channel=True))
    np.testing.assert_array_equal(out[..., 0], out[..., 1])  # both channels span 0..255
    assert out[..., 2].max() == 0


def _tiff(path, array, **kwargs):
    tifffile.imwrite(path, array, **kwargs)
    return path


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_tiffs_read_out_of_the_box(tmp_path, rng, compression):
    """Microscopes and public datasets (the Cell Tracking Challenge's LZW frames) write compressed TIFFs."""
    image = rng.integers(0, 4000, (40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image, compression=compression)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), image)


def test_jpeg_compressed_tiff_reads(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    image = np.stack([xx * 3, yy * 3, (xx + yy) * 2], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image, photometric="rgb", compression="jpeg", compressionargs={"level": 95})
    read = read_image(tmp_path / "a.tif")
    assert read.shape == (64, 64, 3) and np.abs(read.astype(int) - image).max() <= 8  # lossy, RGB order kept


def test_planar_rgb_tiff_moves_channels_last(tmp_path):
    image = np.zeros((3, 10, 12), np.uint8)
    image[2] = 77
    out = read_image(_tiff(tmp_path / "planar.tif", image, photometric="rgb", planarconfig="separate"))
    assert out.shape == (10, 12, 3) and out[..., 2].min() == 77


def test_constant_16bit_image_gives_black_input(tmp_path):
    out = to_rgb8(np.full((10, 10), 500, np.uint16))
    assert out.shape == (10, 10, 3) and out.max() == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not an image"), "cannot be decoded"),
    ],
)
def test_bad_png_files_raise_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad image ü.png"
    make(path)
    with pytest.raises(InputError) as error:
        read_image(path)
    assert message in str(error.value) and path.name in str(error.value) and "\n" not in str(error.value)


def test_truncated_png_is_rejected(tmp_path, rng):
    path = tmp_path / "t.png"
    write_png(path, rng.integers(0, 255, (64, 64), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|cannot be decoded"):
        read_image(path)


def test_truncated_tiff_is_rejected(tmp_path, rng):
    path = _tiff(tmp_path / "t.tif", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="cannot be read as TIFF"):
        read_image(path)


def test_3d_stack_is_rejected(tmp_path):
    path = _tiff(tmp_path / "stack.tif", np.zeros((5, 16, 16), np.uint16))
    with pytest.raises(InputError, match="stack"):
        read_image(path)


def test_unknown_suffix_missing_file_and_tiny_image(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(tmp_path / "a.gif")
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        read_image(tmp_path / "folder.png")
    write_png(tmp_path / "one.png", np.zeros((1, 1), np.uint8))
    with pytest.raises(InputError, match="too small"):
        read_image(tmp_path / "one.png")


def test_list_images_sorts_filters_and_rejects_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no images found"):
        list_images(tmp_path)
    for name in ("b.png", "a.tif", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b.png"]
    with pytest.raises(InputError, match="not a folder"):
        list_images(tmp_path / "missing")


def test_resize_and_size_scale():
    image = np.zeros((10, 20, 3), np.uint8)
    assert resize_image(image, (20, 40)).shape == (20, 40, 3)
    assert resize_image(image[..., 0], (5, 10)).shape == (5, 10)
    assert size_scale(20.0, 40.0) == 2.0
    assert size_scale(None, 40.0) == 1.0
    assert size_scale(1.0, 40.0, max_scale=8.0) == 8.0


def test_unreadable_file_gives_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    write_png(path, np.zeros((8, 8), np.uint8))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "fromfile", refuse)  # chmod cannot lock out root, so refuse the read itself
    with pytest.raises(InputError, match="cannot be read \\(Permission denied\\)"):
        read_image(path)


def test_dim_8bit_image_is_stretched_like_a_16bit_one(rng):
    bright = rng.integers(0, 256, (30, 30)).astype(np.uint8)
    dim = (bright // 6).astype(np.uint8)  # values 0..42, as a dim 8-bit acquisition
    net = to_rgb8(dim, InputConfig(stretch_8bit=True))
    assert net.min() == 0 and net.max() == 255
    assert np.corrcoef(net[..., 0].ravel(), bright.ravel())[0, 1] > 0.99
    np.testing.assert_array_equal(to_rgb8(dim)[..., 0], dim)  # by default 8-bit stays as it is
    np.testing.assert_array_equal(to_rgb8(dim, InputConfig(normalize=False, stretch_8bit=True))[..., 0], dim)  # switched off


def test_joint_stretch_keeps_the_colour_balance_of_a_stain():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:5] = (120, 60, 120)  # purple nuclei
    image[5:] = (200, 180, 200)  # pale background
    joint = to_rgb8(image, InputConfig(stretch_percentiles=(0, 100), stretch_8bit=True)).astype(int)
    assert joint[0, 0, 0] == joint[0, 0, 2] > joint[0, 0, 1]  # still purple
    assert joint[9, 9].max() == 255 and joint[0, 0].min() == 0
    per_channel = to_rgb8(image, InputConfig(stretch_percentiles=(0, 100), per_channel=True, stretch_8bit=True)).astype(int)
    assert per_channel[0, 0].tolist() == [0, 0, 0]  # each channel on its own: the hue is gone


def test_a_dim_stain_is_stretched_and_a_dim_fluorescence_image_is_not():
    nuclei = np.zeros((64, 64), bool)
    nuclei[10:22, 10:22] = nuclei[40:52, 30:42] = True
    stain = np.where(nuclei[..., None], [90, 40, 150], [235, 180, 210]).astype(np.uint8)
    dim_stain = (stain.astype(float) * 40 / 235).round().astype(np.uint8)  # underexposed: 0-40
    seen = to_rgb8(dim_stain)
    assert seen.max() == 255 and seen.min() == 0
    assert seen[nuclei].mean(axis=0).argmin() == 1 and seen[nuclei].mean() < seen[~nuclei].mean() - 100  # still purple, dark on bright
    assert (to_rgb8(stain) == stain).all()  # a stain at full range stays as it is
    assert (to_rgb8(dim_stain, InputConfig(stretch_dim_dark=0)) == dim_stain).all()  # switched off
    dim_fluorescence = np.where(nuclei, 40, 2).astype(np.uint8)  # the models learned these as they are
    np.testing.assert_array_equal(to_rgb8(dim_fluorescence)[..., 0], dim_fluorescence)
    with pytest.raises(ValueError, match="stretch_dim_dark"):
        InputConfig(stretch_dim_dark=300)


def test_polarity_auto_inverts_dark_nuclei_on_a_bright_background_only():
    nuclei = np.zeros((64, 64), bool)
    nuclei[10:22, 10:22] = nuclei[40:52, 30:42] = True
    stained = np.where(nuclei[..., None], [90, 40, 150], [235, 180, 210]).astype(np.uint8)
    fluorescence = np.repeat(np.where(nuclei, 200, 10).astype(np.uint8)[..., None], 3, axis=2)
    assert has_dark_nuclei(stained) and not has_dark_nuclei(fluorescence)
    auto = InputConfig(polarity="auto")
    seen = to_rgb8(stained, auto)
    assert (seen[..., 0] == seen[..., 2]).all() and seen[nuclei].mean() > seen[~nuclei].mean() + 100  # gray, bright nuclei
    assert (to_rgb8(fluorescence, auto) == to_rgb8(fluorescence)).all()  # already bright on dark: untouched
    assert to_rgb8(fluorescence, InputConfig(polarity="invert"))[nuclei].mean() < 60
    assert (to_rgb8(stained) == stained).all() and (display_rgb8(stained, auto)[nuclei].mean(axis=0) < 160).all()  # people see it as it is
    with pytest.raises(ValueError, match="polarity"):
        InputConfig(polarity="bright")


def test_non_finite_pixels_are_left_out_of_the_stretch():
    image = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    image[0, :3] = (np.nan, np.inf, -np.inf)
    net = to_rgb8(image, InputConfig(stretch_percentiles=(0, 100)))
    assert net[0, :3, 0].tolist() == [0, 0, 0] and net[9, 9, 0] == 255
    assert net[5, 5, 0] == round(255 * (55 / 99 - 3 / 99) / (96 / 99))


def test_without_normalisation_16bit_and_float_keep_their_fixed_ranges():
    assert to_rgb8(np.full((4, 4), 65535, np.uint16), InputConfig(normalize=False)).max() == 255
    assert to_rgb8(np.full((4, 4), 257 * 10, np.uint16), InputConfig(normalize=False)).max() == 10
    assert to_rgb8(np.full((4, 4), 0.5, np.float32), InputConfig(normalize=False)).max() == 128


@pytest.mark.parametrize("percentiles", [(50, 50), (-1, 99), (2, 101), (90, 10)])
def test_unordered_or_out_of_range_percentiles_are_refused(percentiles):
    with pytest.raises(ValueError, match="stretch_percentiles"):
        InputConfig(stretch_percentiles=percentiles)


def test_gather_images_takes_a_folder_a_file_or_a_glob(tmp_path, monkeypatch):
    for name in ("plate1/a_DAPI.tif", "plate1/a_GFP.tif", "plate1/b_DAPI.tif", "plate2/c_DAPI.png", "plate2/notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in gather_images(tmp_path / "plate1")] == ["a_DAPI.tif", "a_GFP.tif", "b_DAPI.tif"]
    assert gather_images(tmp_path / "plate1" / "b_DAPI.tif") == [tmp_path / "plate1" / "b_DAPI.tif"]
    assert [p.name for p in gather_images(f"{tmp_path}/plate1/*_DAPI.tif")] == ["a_DAPI.tif", "b_DAPI.tif"]
    assert [p.name for p in gather_images(f"{tmp_path}/**/*_DAPI.*")] == ["a_DAPI.tif", "b_DAPI.tif", "c_DAPI.png"]
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in gather_images("plate*/c_*")] == ["plate2/c_DAPI.png"]  # relative patterns too


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing", "not found (expected a folder of images, an image file or a glob pattern"),
        ("plate/*.jpg", "the pattern matches no image"),
        ("plate/notes.txt", "unknown image format '.txt'"),
        ("*/a.png", "several images share the name 'a'"),
    ],
)
def test_gather_images_says_what_is_wrong(tmp_path, monkeypatch, source, message):
    for name in ("plate/a.png", "plate/notes.txt", "other/a.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        gather_images(source)


def test_microscope_formats_without_their_readers_say_how_to_get_them(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bioio(name, *args, **kwargs):
        if name.startswith("bioio"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bioio)
    (tmp_path / "plate.czi").write_bytes(b"ZISRAWFILE")
    assert [p.name for p in list_images(tmp_path)] == ["plate.czi"]
    with pytest.raises(InputError, match=r"plate\.czi: reading \.czi files needs the optional readers: uv sync --extra formats \(bioio\)"):
        read_image(tmp_path / "plate.czi")
