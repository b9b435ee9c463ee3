"""The stimulus PNG encoder: lossless (decoded by Pillow), deterministic, refuses bad input."""

import io

import numpy as np
import pytest
from PIL import Image

from stimuli.png import encode_rgb


def _decode(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    im.load()  # also checks every chunk's CRC and the zlib stream
    assert im.mode == "RGB"
    return np.asarray(im)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (31, 17, 3), (224, 224, 3)])
def test_random_pixels_round_trip(shape):
    px = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(_decode(encode_rgb(px)), px)


def test_wrapping_differences_and_smooth_images_round_trip():
    """ "Up" differences wrap modulo 256 (0 under 255, 255 under 0), and smooth images compress."""
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[::2] = 255
    assert np.array_equal(_decode(encode_rgb(stripes)), stripes)
    ramp = np.broadcast_to(np.arange(224, dtype=np.uint8)[:, None, None], (224, 224, 3)).copy()
    data = encode_rgb(ramp)
    assert np.array_equal(_decode(data), ramp)
    assert len(data) < ramp.nbytes / 20


def test_non_contiguous_view_and_determinism():
    px = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = px[:, ::2]
    assert np.array_equal(_decode(encode_rgb(view)), view)
    assert encode_rgb(px) == encode_rgb(px.copy())


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)]
)
def test_refuses_other_than_rgb_uint8(bad):
    with pytest.raises(ValueError, match="uint8"):
        encode_rgb(bad)
