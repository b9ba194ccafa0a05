import numpy as np
import pytest
import torch

from workflow.core.views import VIEWS, ViewsConfig, unview_tensor, view_image, view_tensor


@pytest.mark.parametrize("view", VIEWS)
def test_a_view_of_an_image_and_of_a_tensor_agree_and_undo(view):
    image = np.arange(4 * 6 * 3).reshape(4, 6, 3)
    shown = view_image(image, view)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]  # (1, C, H, W)
    assert np.array_equal(view_tensor(tensor, view)[0].permute(1, 2, 0).numpy(), shown)
    assert torch.equal(unview_tensor(view_tensor(tensor, view), view), tensor)
    assert shown.shape == ((6, 4, 3) if "t" in view else (4, 6, 3))


def test_views_are_eight_distinct_symmetries_and_bad_names_are_refused():
    image = np.arange(16).reshape(4, 4)
    shown = {view_image(image, view).tobytes() for view in VIEWS} | {image.tobytes()}
    assert len(shown) == 8
    for bad in (("x",), ("h", "h"), ("vt",)):
        with pytest.raises(ValueError, match="views.unet"):
            ViewsConfig(unet=bad)
