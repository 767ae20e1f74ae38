"""Thermal normalisation: 16-bit / float frames to uint8 for the matcher."""
import numpy as np
import pytest

from matchanything_ros.imaging.thermal import ThermalConfig, normalize_thermal


def _ramp(h=64, w=80, lo=20000, hi=24000, dtype=np.uint16):
    ramp = np.linspace(lo, hi, w, dtype=np.float64)[None, :].repeat(h, 0)
    return ramp.astype(dtype)


def test_default_percentile_stretches_a_narrow_16bit_range():
    out = normalize_thermal(_ramp())
    assert out.dtype == np.uint8 and out.shape == (64, 80)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out[0].astype(int)) >= 0)  # monotonic


def test_percentile_is_robust_to_hot_outliers():
    img = _ramp()
    img[:2, :2] = 65535  # 4 hot pixels (< 1 %)
    robust = normalize_thermal(img)
    naive = normalize_thermal(img, ThermalConfig(mode="minmax"))
    assert np.ptp(robust[10]) >= 250  # scene keeps the full range
    assert np.ptp(naive[10]) < 30  # min-max is flattened by the outliers
    assert robust[0, 0] == 255


def test_fixed_range_uses_raw_units_and_clips():
    img = np.array([[1000, 2000, 3000, 5000]], dtype=np.uint16)
    out = normalize_thermal(img, ThermalConfig(mode="fixed", fixed_min=2000, fixed_max=4000))
    assert out.tolist() == [[0, 0, 128, 255]]
    # same mapping whatever the frame content: stable between frames
    out2 = normalize_thermal(img[:, :2], ThermalConfig(mode="fixed", fixed_min=2000, fixed_max=4000))
    assert out2.tolist() == [[0, 0]]


def test_minmax_maps_extremes():
    img = np.array([[10.0, 20.0, 30.0]], dtype=np.float32)
    assert normalize_thermal(img, ThermalConfig(mode="minmax")).tolist() == [[0, 128, 255]]


def test_inversion():
    img = _ramp()
    a = normalize_thermal(img)
    b = normalize_thermal(img, ThermalConfig(invert=True))
    np.testing.assert_array_equal(b, 255 - a)


def test_clahe_increases_local_contrast():
    rng = np.random.default_rng(0)
    # faint texture on two plateaus far apart (cold background, hot object): the global stretch
    # spends the 8-bit range on the step, CLAHE brings the texture back
    img = np.full((128, 128), 20000.0)
    img[:, 64:] = 30000.0
    img = (img + rng.normal(0, 30, img.shape)).astype(np.uint16)
    plain = normalize_thermal(img)
    eq = normalize_thermal(img, ThermalConfig(clahe=True, clahe_clip_limit=4.0, clahe_tile_grid=8))
    assert eq.shape == plain.shape and eq.dtype == np.uint8

    def texture_std(x):  # mean std of 8x8 blocks (none straddles the step at column 64)
        blocks = x.astype(float).reshape(16, 8, 16, 8).transpose(0, 2, 1, 3).reshape(256, 64)
        return blocks.std(axis=1).mean()

    assert texture_std(eq) > 3 * texture_std(plain)


@pytest.mark.parametrize("mode", ["percentile", "minmax"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_image_does_not_divide_by_zero(mode, dtype):
    img = np.full((8, 8), 7, dtype=dtype)
    with np.errstate(all="raise"):
        out = normalize_thermal(img, ThermalConfig(mode=mode))
    assert out.dtype == np.uint8 and np.all(out == 0)


def test_uint8_and_float_inputs():
    u8 = _ramp(dtype=np.uint8, lo=100, hi=140)
    assert normalize_thermal(u8).max() == 255
    kelvin = _ramp(dtype=np.float32, lo=290.0, hi=310.0)
    out = normalize_thermal(kelvin)
    assert out.min() == 0 and out.max() == 255


def test_nan_pixels_are_ignored_and_black():
    img = _ramp(dtype=np.float32, lo=290.0, hi=310.0)
    img[5:10, 5:10] = np.nan
    img[0, 0] = np.inf
    with np.errstate(invalid="raise"):
        out = normalize_thermal(img)
    assert np.all(out[5:10, 5:10] == 0) and out[0, 0] == 0
    assert out.max() == 255
    inv = normalize_thermal(img, ThermalConfig(invert=True))
    assert np.all(inv[5:10, 5:10] == 0)
    assert np.all(normalize_thermal(np.full((4, 4), np.nan, np.float32)) == 0)


def test_single_channel_3d_and_16bit_colour_input():
    img = _ramp()
    np.testing.assert_array_equal(normalize_thermal(img[:, :, None]), normalize_thermal(img))
    colour = np.stack([img, img, img], axis=2)
    out = normalize_thermal(colour)
    assert out.shape == img.shape and abs(int(out.max()) - 255) <= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "histeq"}, "thermal.mode must be one of"),
        ({"low_percentile": 50, "high_percentile": 40}, "low_percentile < high_percentile"),
        ({"high_percentile": 101}, "<= 100"),
        ({"low_percentile": -1}, "0 <= low_percentile"),
        ({"mode": "fixed", "fixed_min": 5, "fixed_max": 5}, "fixed_min .* must be smaller"),
        ({"clahe_clip_limit": 0}, "clahe_clip_limit must be > 0"),
        ({"clahe_tile_grid": 0}, "clahe_tile_grid must be an integer"),
        ({"clahe_tile_grid": 2.5}, "clahe_tile_grid must be an integer"),
        ({"invert": "yes"}, "thermal.invert must be true or false"),
        ({"fixed_max": float("nan")}, "must be finite"),
        ({"low_percentile": "1"}, "must be a number"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ThermalConfig(**kwargs)


def test_bad_images_raise():
    with pytest.raises(ValueError, match="empty image"):
        normalize_thermal(np.zeros((0, 4), np.uint16))
    with pytest.raises(ValueError, match=r"expects an \(H, W\) image"):
        normalize_thermal(np.zeros((2, 2, 2, 2), np.uint16))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_percentiles_match_numpy(dtype):
    rng = np.random.default_rng(3)
    hi = np.iinfo(dtype).max
    img = rng.normal(hi * 0.4, hi * 0.05, (37, 53)).clip(0, hi).astype(dtype)
    cfg = ThermalConfig(low_percentile=2.5, high_percentile=97.0)
    lo_v, hi_v = np.percentile(img, [2.5, 97.0])
    expected = np.clip((img.astype(np.float64) - lo_v) * 255.0 / (hi_v - lo_v) + 0.5, 0, 255).astype(np.uint8)
    out = normalize_thermal(img, cfg)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
