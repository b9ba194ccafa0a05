import numpy as np
import torch

from workflow.core.tensors import image_tensor


def test_image_tensor_scales_standardises_and_keeps_batches():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    plain = image_tensor(image)
    assert plain.shape == (3, 5, 7) and plain.dtype == torch.float32
    np.testing.assert_allclose(plain.numpy(), image.transpose(2, 0, 1) / 255, rtol=1e-6)
    standard = image_tensor(image, mean=(0.5, 0.4, 0.3), std=(0.25, 0.5, 1.0))
    expected = (image.transpose(2, 0, 1) / 255 - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array([0.25, 0.5, 1.0])[:, None, None]
    np.testing.assert_allclose(standard.numpy(), expected, rtol=1e-5, atol=1e-6)
    batch = image_tensor(np.stack([image, image[::-1]]), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert batch.shape == (2, 3, 5, 7)
    assert batch.min() >= -1 and batch.max() <= 1
    np.testing.assert_allclose(batch[1].numpy(), ((image[::-1].transpose(2, 0, 1) / 255) - 0.5) / 0.5, rtol=1e-5, atol=1e-6)
