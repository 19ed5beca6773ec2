"""The offline shift suite (tfxfer.data.shift): each corruption against an independent numpy
computation or its defining statistic, deterministic, harsher with severity; the accuracy
table; bad names refused in one line."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from tfxfer.data import shift
from tfxfer.errors import UserError


def _photo(seed=0, n=2, size=48):
    """Smooth random images: a few blobs of colour, like photos rather than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, size, size, 3))
    for _ in range(6):
        cy, cx, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / w**2)
        out += blob[None, :, :, None] * rng.uniform(0, 255, (n, 1, 1, 3))
    return np.clip(out / out.max() * 255, 0, 255).astype(np.uint8)


def test_gaussian_noise_has_its_sigma_and_is_the_same_for_the_same_seed():
    grey = np.full((3, 64, 64, 3), 128, np.uint8)
    for severity, sigma in zip(shift.SEVERITIES, shift.NOISE):
        out = shift.corrupt(grey, "gaussian_noise", severity, seed=5).numpy()
        residual = (out.astype(float) - 128) / 255
        assert abs(residual.mean()) < 0.01 and abs(residual.std() / sigma - 1) < 0.05
        again = shift.corrupt(grey, "gaussian_noise", severity, seed=5).numpy()
        np.testing.assert_array_equal(out, again)
        assert not np.array_equal(out[0], out[1])  # each image its own noise
    other = shift.corrupt(grey, "gaussian_noise", 1, seed=6).numpy()
    assert not np.array_equal(other, shift.corrupt(grey, "gaussian_noise", 1, seed=5).numpy())


def test_defocus_blur_is_an_antialiased_disk_convolution_with_reflected_borders():
    x = _photo()
    for severity in shift.SEVERITIES:
        radius = shift.BLUR_RADIUS[severity - 1] * 48 / 224
        r = int(np.ceil(radius + 0.5))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        kernel = np.clip(radius + 0.5 - np.hypot(yy, xx), 0, 1)  # pixel coverage of the disk
        kernel /= kernel.sum()
        padded = np.pad(x.astype(float) / 255, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
        want = np.zeros(x.shape)
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                want += kernel[dy, dx] * padded[:, dy : dy + 48, dx : dx + 48, :]
        want = np.round(np.clip(want, 0, 1) * 255)
        got = shift.corrupt(x, "defocus_blur", severity).numpy().astype(float)
        assert np.abs(got - want).max() <= 1, severity


def test_contrast_and_brightness_follow_their_formulas():
    x = _photo(1)
    for severity, c in zip(shift.SEVERITIES, shift.CONTRAST):
        unit = x / 255.0
        mean = unit.mean(axis=(1, 2, 3), keepdims=True)
        want = np.round(np.clip((unit - mean) * c + mean, 0, 1) * 255)
        got = shift.corrupt(x, "contrast", severity).numpy()
        assert np.abs(got - want).max() <= 1
    small = x[:1, :6, :6]
    for severity, b in zip(shift.SEVERITIES, shift.BRIGHTNESS):
        want = np.zeros(small.shape)
        for index in np.ndindex(small.shape[:3]):
            h, s, v = colorsys.rgb_to_hsv(*(small[index] / 255.0))
            want[index] = np.round(np.array(colorsys.hsv_to_rgb(h, s, min(1.0, v + b))) * 255)
        got = shift.corrupt(small, "brightness", severity).numpy()
        assert np.abs(got - want).max() <= 1


def test_every_corruption_keeps_the_shape_and_gets_harsher_with_severity():
    x = _photo(2, n=2, size=64)
    for name in shift.CORRUPTIONS:
        errors = []
        for severity in shift.SEVERITIES:
            out = shift.corrupt(x, name, severity).numpy()
            assert out.shape == x.shape and out.dtype == np.uint8
            errors.append(np.abs(out.astype(float) - x).mean())
        assert 0 < errors[0] < errors[1] < errors[2], (name, errors)


def test_the_accuracy_table_covers_every_set_and_averages_the_corrupted_ones():
    x = np.concatenate(
        [np.full((4, 16, 16, 3), 40, np.uint8), np.full((4, 16, 16, 3), 200, np.uint8)]
    )
    labels = np.array([0] * 4 + [1] * 4)

    def by_brightness(batch):  # class 1 when the mean pixel is above 100
        mean = np.asarray(batch, float).mean(axis=(1, 2, 3))
        return np.stack([mean <= 100, mean > 100], axis=1).astype(float)

    table = shift.accuracy(by_brightness, x, labels, batch_size=3)
    assert set(table) == {"clean", "mean"} | {
        f"{n}/{s}" for n in shift.CORRUPTIONS for s in shift.SEVERITIES
    }
    assert table["clean"] == 1.0
    corrupted = [v for k, v in table.items() if k not in ("clean", "mean")]
    assert table["mean"] == pytest.approx(np.mean(corrupted), abs=1e-4)
    # 40 + 0.2 * 255 = 91 stays dark; 40 + 0.3 * 255 = 116 crosses the line
    assert table["brightness/2"] == 1.0 and table["brightness/3"] == 0.5


@pytest.mark.parametrize(
    "name, severity, words",
    [("fog", 1, "unknown corruption"), ("jpeg", 4, "severity must be 1, 2 or 3")],
)
def test_a_bad_corruption_is_refused_in_one_line(name, severity, words):
    with pytest.raises(UserError, match=words):
        shift.corrupt(np.zeros((1, 8, 8, 3), np.uint8), name, severity)
