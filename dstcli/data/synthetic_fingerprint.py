"""A synthetic latent-fingerprint set: master prints, impressions and latents, as pairs.

`write_synthetic_fingerprints(root, n_pairs, seed)` writes PNG images, PNG masks and a pair
manifest (`pairs.csv`, the format of `dstcli.data.pair_manifest`) that `dst prepare
fingerprint` reads like any real source. It stands in for NIST SD27, IIITD MOLF and IIITD MUST,
which cannot be downloaded here; docs/data/fingerprint.md says what it models and what not.

How a finger is drawn (in the spirit of SFinGe, Cappelli et al.; written from the published
ideas, not from any code):

- **Orientation field** of the finger's class from the zero-pole model: the ridge angle at z is
  theta0 + 1/2 (sum of arg(z - delta) - sum of arg(z - core)), cores and deltas placed per class
  (a loop: one core, one delta to its side; a whorl: two cores side by side, two deltas; a
  double loop: two cores offset diagonally; a tented arch: a core right above a delta). The
  plain arch has no singular point: its ridges are level lines of a smooth bump. A slow random
  warp of the angle makes every finger of a class different.
- **Ridges** grown from white noise by oriented band-pass (Gabor-like) filtering in the Fourier
  domain, a few rounds: each pixel takes the response of the filter of its own orientation and
  its own ridge frequency, which varies slowly over the finger.
- **An elliptical foreground**: the fingertip.

An impression of a finger (the "fingerprint" of a pair) is the master seen through a rotation,
a shift, a smooth elastic distortion and a pressure map (dry or wet ridges, a contact region
smaller than the fingertip), plus sensor noise; its mask is the contact region. A latent is a
partial, smudged, low-contrast impression on a textured surface; its mask is the region where
the ridges are visible. Genuine pairs are two renderings of one master; impostor pairs take
the latent from another finger of the same split.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dstcli.errors import DataError

# The six pattern classes of the paper's Figure 10, in label order.
CLASSES = ("arch", "tented_arch", "left_loop", "right_loop", "whorl", "double_loop")

# Table 2's share of training pairs labelled for each task (match is always labelled).
TABLE2_LABEL_FRACTIONS = {
    "fp_orientation": 0.7912,
    "fp_segmentation": 0.7912,
    "lfp_orientation": 0.7667,  # 32,308 / 42,140 (the table prints 76.76%)
    "lfp_segmentation": 0.2315,
    "matching": 1.0,
}

SIZE = (120, 100)  # (H, W) of every generated image; `dst prepare` resizes to the preset
PERIOD = (6.0, 8.0)  # ridge period range in pixels at SIZE (about 500 ppi scaled down)
ORIENTATION_BINS = 12
FREQUENCY_BINS = 3
GROWTH_ROUNDS = 5
PAIRS_PER_FINGER = 4  # each finger heads two genuine and two impostor pairs
FINGERS_PER_SUBJECT = 2


# ---------------------------------------------------------------------------------------------
# Small numpy tools: smooth noise, sampling at warped coordinates


def _frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The rfft2 frequency grid in cycles per pixel: (u along x, v along y), each (H, W//2+1)."""
    v = np.fft.fftfreq(shape[0])[:, None]
    u = np.fft.rfftfreq(shape[1])[None, :]
    return np.broadcast_to(u, (shape[0], u.shape[1])), np.broadcast_to(v, (shape[0], u.shape[1]))


def _lowpass(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D array by sigma pixels (periodic borders; fine for noise)."""
    u, v = _frequencies(field.shape)
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (u**2 + v**2))
    return np.fft.irfft2(np.fft.rfft2(field) * gain, s=field.shape)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std noise with features about sigma pixels wide."""
    field = _lowpass(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def _sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: float) -> np.ndarray:
    """Bilinear samples of image at (ys, xs); points outside the image take `fill`."""
    h, w = image.shape
    inside = (ys >= 0) & (ys <= h - 1) & (xs >= 0) & (xs <= w - 1)
    y = np.clip(ys, 0, h - 1)
    x = np.clip(xs, 0, w - 1)
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2)
    x0 = np.minimum(np.floor(x).astype(np.intp), w - 2)
    fy, fx = y - y0, x - x0
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return np.where(inside, top * (1 - fy) + bottom * fy, fill)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ys.astype(np.float64), xs.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Master prints


@dataclass
class Master:
    """One finger: its class, its ridge image in [-1, 1] (ridges negative) and its fingertip."""

    pattern: str
    ridges: np.ndarray  # (H, W) float
    foreground: np.ndarray  # (H, W) float in {0, 1}: the elliptical fingertip
    orientation: np.ndarray  # (H, W) ridge angle in radians, image axes (x right, y down)


def _singular_points(pattern: str, rng: np.random.Generator, shape: tuple[int, int]
                     ) -> tuple[list[complex], list[complex]]:
    """Cores and deltas of a class, as complex x + iy in pixels, jittered per finger."""
    h, w = shape
    cx = w * (0.5 + rng.uniform(-0.06, 0.06))
    cy = h * (0.45 + rng.uniform(-0.06, 0.06))

    def j(scale: float) -> float:
        return rng.uniform(-scale, scale)

    if pattern == "tented_arch":
        return [complex(cx + j(3), cy - 0.08 * h)], [complex(cx + j(3), cy + 0.1 * h + j(3))]
    if pattern in ("left_loop", "right_loop"):
        # As the print is seen: a left loop's ridges enter and leave on the left, so its delta
        # lies below and to the right of the core; a right loop is the mirror image.
        side = 1 if pattern == "left_loop" else -1
        core = complex(cx - side * 0.08 * w + j(4), cy - 0.05 * h + j(4))
        delta = complex(cx + side * 0.3 * w + j(4), cy + 0.28 * h + j(4))
        return [core], [delta]
    if pattern == "whorl":
        gap = 0.07 * w + j(2)
        cores = [complex(cx - gap, cy + j(2)), complex(cx + gap, cy + j(2))]
        deltas = [complex(cx - 0.34 * w + j(4), cy + 0.3 * h + j(4)),
                  complex(cx + 0.34 * w + j(4), cy + 0.3 * h + j(4))]
        return cores, deltas
    if pattern == "double_loop":
        tilt = rng.choice([-1, 1])
        cores = [complex(cx - tilt * 0.1 * w + j(3), cy - 0.1 * h + j(3)),
                 complex(cx + tilt * 0.1 * w + j(3), cy + 0.1 * h + j(3))]
        deltas = [complex(cx - 0.36 * w + j(4), cy + 0.32 * h + j(4)),
                  complex(cx + 0.36 * w + j(4), cy + 0.3 * h + j(4))]
        return cores, deltas
    return [], []


def orientation_field(pattern: str, rng: np.random.Generator, shape: tuple[int, int]
                      ) -> np.ndarray:
    """The ridge angle at every pixel, in radians modulo pi (image axes: x right, y down)."""
    ys, xs = _grid(shape)
    h, w = shape
    if pattern == "arch":
        # Ridges are level lines of y + a bump centred on the finger: flat far from the centre,
        # arched over it. The tangent of a level line is perpendicular to the gradient.
        cx = w * (0.5 + rng.uniform(-0.06, 0.06))
        cy = h * (0.55 + rng.uniform(-0.06, 0.06))
        sx, sy = w * rng.uniform(0.22, 0.3), h * rng.uniform(0.25, 0.35)
        amp = h * rng.uniform(0.2, 0.3)
        bump = amp * np.exp(-((xs - cx) / sx) ** 2 / 2 - ((ys - cy) / sy) ** 2 / 2)
        fx = -bump * (xs - cx) / sx**2
        fy = 1 - bump * (ys - cy) / sy**2
        theta = np.arctan2(-fx, fy)
    else:
        cores, deltas = _singular_points(pattern, rng, shape)
        z = xs - 1j * ys  # the zero-pole model is written with y up
        angle = np.zeros(shape)
        for d in deltas:
            angle += np.angle(z - complex(d.real, -d.imag))
        for c in cores:
            angle -= np.angle(z - complex(c.real, -c.imag))
        # The model's angle is counter-clockwise with y up; with y down it changes sign.
        theta = 0.5 * angle
    theta = theta + rng.uniform(-0.15, 0.15) + 0.12 * _smooth_noise(rng, shape, 0.3 * w)
    return np.mod(theta, np.pi)


def _gabor_bank(shape: tuple[int, int], periods: np.ndarray) -> np.ndarray:
    """Frequency responses (K * F, H, W//2+1) of oriented band-pass filters.

    Filter (k, f) passes ridges at angle k * pi / K with period periods[f]: a pair of
    Gaussians on the wave vector, which is perpendicular to the ridges.
    """
    u, v = _frequencies(shape)
    bank = []
    for k in range(ORIENTATION_BINS):
        ridge = k * np.pi / ORIENTATION_BINS
        # The wave vector (perpendicular to the ridge) and the ridge direction, in (u, v).
        along = u * -np.sin(ridge) + v * np.cos(ridge)
        across = u * np.cos(ridge) + v * np.sin(ridge)
        for period in periods:
            f = 1.0 / period
            radial_sigma, angular_sigma = 0.22 * f, 0.3 * f
            g = np.exp(-((np.abs(along) - f) ** 2) / (2 * radial_sigma**2)
                       - across**2 / (2 * angular_sigma**2))
            bank.append(g)
    return np.stack(bank)


_BANKS: dict[tuple, np.ndarray] = {}


def _bank(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    periods = np.linspace(PERIOD[0], PERIOD[1], FREQUENCY_BINS)
    key = (shape, tuple(periods))
    if key not in _BANKS:
        _BANKS[key] = _gabor_bank(shape, periods)
    return _BANKS[key], periods


def grow_ridges(theta: np.ndarray, period: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ridges in [-1, 1] following theta with the given local period, grown from noise."""
    shape = theta.shape
    bank, periods = _bank(shape)

    # Each pixel blends the two nearest orientation bins and the two nearest period bins.
    t = theta / (np.pi / ORIENTATION_BINS)
    k0 = np.floor(t).astype(np.intp) % ORIENTATION_BINS
    k1 = (k0 + 1) % ORIENTATION_BINS
    a = t - np.floor(t)
    s = np.clip((period - periods[0]) / (periods[-1] - periods[0]) * (FREQUENCY_BINS - 1), 0,
                FREQUENCY_BINS - 1 - 1e-9)
    f0 = np.floor(s).astype(np.intp)
    f1 = np.minimum(f0 + 1, FREQUENCY_BINS - 1)
    b = s - f0
    picks = [(k0 * FREQUENCY_BINS + f0, (1 - a) * (1 - b)), (k0 * FREQUENCY_BINS + f1, (1 - a) * b),
             (k1 * FREQUENCY_BINS + f0, a * (1 - b)), (k1 * FREQUENCY_BINS + f1, a * b)]

    image = rng.standard_normal(shape)
    for _ in range(GROWTH_ROUNDS):
        responses = np.fft.irfft2(np.fft.rfft2(image)[None] * bank, s=shape)  # (K*F, H, W)
        out = np.zeros(shape)
        for index, weight in picks:
            out += weight * np.take_along_axis(responses, index[None], axis=0)[0]
        # Normalise by the local amplitude so faint and strong regions both become full ridges.
        envelope = np.sqrt(_lowpass(out**2, 4.0)) + 1e-9
        image = np.tanh(2.5 * out / envelope)
    return image


def make_master(pattern: str, rng: np.random.Generator, shape: tuple[int, int] = SIZE) -> Master:
    h, w = shape
    theta = orientation_field(pattern, rng, shape)
    base = rng.uniform(PERIOD[0] + 0.3, PERIOD[1] - 0.3)
    period = base * (1 + 0.08 * _smooth_noise(rng, shape, 0.35 * w))
    ridges = grow_ridges(theta, period, rng)
    ys, xs = _grid(shape)
    cx, cy = w * (0.5 + rng.uniform(-0.03, 0.03)), h * (0.5 + rng.uniform(-0.03, 0.03))
    ax, ay = w * rng.uniform(0.4, 0.46), h * rng.uniform(0.42, 0.47)
    foreground = (((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1).astype(np.float64)
    return Master(pattern, ridges, foreground, theta)


# ---------------------------------------------------------------------------------------------
# Impressions and latents


def _warp(master: Master, rng: np.random.Generator, rotation: float, shift: float,
          elastic: float) -> tuple[np.ndarray, np.ndarray]:
    """The master's ridges and fingertip seen through a rotation, a shift and a smooth warp."""
    h, w = master.ridges.shape
    ys, xs = _grid((h, w))
    angle = np.deg2rad(rng.uniform(-rotation, rotation))
    ty, tx = rng.uniform(-shift, shift, size=2) * np.array([h, w])
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # Where each output pixel comes from in the master (the inverse map).
    dy, dx = ys - cy - ty, xs - cx - tx
    src_y = cy + np.cos(angle) * dy - np.sin(angle) * dx
    src_x = cx + np.sin(angle) * dy + np.cos(angle) * dx
    src_y += elastic * _smooth_noise(rng, (h, w), 10.0)
    src_x += elastic * _smooth_noise(rng, (h, w), 10.0)
    ridges = _sample(master.ridges, src_y, src_x, 1.0)
    foreground = _sample(master.foreground, src_y, src_x, 0.0)
    return ridges, foreground


def _ink(ridges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How dark each pixel is printed, 0..1: a pressure-dependent threshold on the ridges."""
    wetness = rng.uniform(-0.35, 0.35)  # > 0 wet (thick ridges), < 0 dry (thin, broken)
    ink = 1 / (1 + np.exp(6 * (ridges - wetness)))
    if wetness < 0:
        ink *= 1 - 0.5 * (_smooth_noise(rng, ridges.shape, 1.2) > 1.0)
    return ink


def render_impression(master: Master, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A rolled or plain impression of the master: (uint8 image, bool contact mask)."""
    shape = master.ridges.shape
    h, w = shape
    ridges, fingertip = _warp(master, rng, rotation=8, shift=0.03, elastic=1.5)
    ys, xs = _grid(shape)

    # Pressure: strongest at the centre of the finger, falling off towards its rim; the contact
    # region is where it stays positive, a little smaller and less regular than the fingertip.
    r2 = ((xs - w / 2) / (0.5 * w)) ** 2 + ((ys - h / 2) / (0.5 * h)) ** 2
    pressure = rng.uniform(0.9, 1.3) - r2 + 0.15 * _smooth_noise(rng, shape, 8.0)
    contact = np.clip(pressure / 0.15, 0, 1) * (fingertip > 0.5)
    mask = contact > 0

    darkness = rng.uniform(170, 215)
    paper = rng.uniform(225, 248)
    image = paper - darkness * _ink(ridges, rng) * contact
    image += rng.normal(0, rng.uniform(2, 7), size=shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _surface(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A textured background: uneven lighting, grain, and a few strokes (print, scratches)."""
    from PIL import Image, ImageDraw

    h, w = shape
    level = rng.uniform(90, 200)
    image = level + rng.uniform(15, 40) * _smooth_noise(rng, shape, 0.3 * w)
    image += rng.uniform(3, 10) * _smooth_noise(rng, shape, 1.0)
    strokes = Image.new("L", (w, h), 0)
    pen = ImageDraw.Draw(strokes)
    for _ in range(rng.integers(1, 6)):
        x0, x1 = rng.uniform(-0.2, 1.2, size=2) * w
        y0, y1 = rng.uniform(-0.2, 1.2, size=2) * h
        pen.line([(x0, y0), (x1, y1)], fill=int(rng.integers(60, 255)),
                 width=int(rng.integers(1, 4)))
    sign = rng.choice([-1.0, 1.0])
    image += sign * rng.uniform(0.1, 0.3) * np.asarray(strokes, dtype=np.float64)
    return image


def render_latent(master: Master, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A latent of the master: partial, smudged, faint, on a textured surface.

    Returns (uint8 image, bool mask of the region where ridges are visible).
    """
    shape = master.ridges.shape
    h, w = shape
    ridges, fingertip = _warp(master, rng, rotation=12, shift=0.05, elastic=2.5)
    ink = _ink(ridges, rng)

    # Smudge: a blur and a short smear along one direction.
    ink = _lowpass(ink, rng.uniform(0.4, 1.1))
    steps = int(rng.integers(0, 4))
    if steps:
        direction = rng.uniform(0, np.pi)
        dy, dx = np.sin(direction), np.cos(direction)
        smeared = ink.copy()
        for s in range(1, steps + 1):
            smeared += np.roll(ink, (round(s * dy), round(s * dx)), axis=(0, 1))
        ink = smeared / (steps + 1)

    # The part of the finger that left a mark: a blob around a random point of the fingertip.
    ys, xs = _grid(shape)
    inside = np.argwhere(fingertip > 0.5)
    if len(inside) == 0:
        inside = np.array([[h // 2, w // 2]])
    py, px = inside[rng.integers(len(inside))]
    radius = rng.uniform(0.3, 0.5)
    blob = 1 - (((ys - py) / (radius * h)) ** 2 + ((xs - px) / (radius * w)) ** 2)
    blob += 0.35 * _smooth_noise(rng, shape, 6.0)
    visible = np.clip(blob / 0.2, 0, 1) * (fingertip > 0.5)
    mask = visible > 0

    contrast = rng.uniform(25, 70)
    image = _surface(rng, shape) - contrast * ink * visible
    image += rng.normal(0, rng.uniform(2, 8), size=shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


# ---------------------------------------------------------------------------------------------
# The set


@dataclass(frozen=True)
class Finger:
    index: int
    subject: str
    finger: str
    split: str
    pattern: str


def _plan_fingers(n_pairs: int, seed: int, test_fraction: float,
                  classes: tuple[str, ...]) -> list[Finger]:
    """Fingers grouped into subjects, subjects split train/test, classes dealt per split.

    Each split holds a whole multiple of the class count (and of the fingers per subject), so
    every class has as many fingers as any other in each split. Small sets therefore get a
    test share above test_fraction.
    """
    unit = int(np.lcm(len(classes), FINGERS_PER_SUBJECT))
    wanted = max(2 * unit, -(-n_pairs // PAIRS_PER_FINGER))
    n_test = max(unit, unit * round(test_fraction * wanted / unit))
    n_train = max(unit, unit * round((1 - test_fraction) * wanted / unit))
    rng = np.random.default_rng([seed, 0])
    n_subjects = (n_train + n_test) // FINGERS_PER_SUBJECT
    # Subject numbers are shuffled so that the split is not readable from them.
    numbers = rng.permutation(n_subjects) + 1
    fingers = []
    for split, count in (("train", n_train), ("test", n_test)):
        deal = rng.permutation(count) % len(classes)
        for j in range(count):
            subject = numbers[len(fingers) // FINGERS_PER_SUBJECT]
            if j % FINGERS_PER_SUBJECT == 0:
                digits = rng.choice(10, size=FINGERS_PER_SUBJECT, replace=False) + 1
            fingers.append(Finger(len(fingers), f"s{subject:04d}",
                                  str(int(digits[j % FINGERS_PER_SUBJECT])), split,
                                  classes[deal[j]]))
    return fingers


def _plan_pairs(fingers: list[Finger], n_pairs: int, seed: int,
                classes: tuple[str, ...]) -> list[tuple[Finger, Finger]]:
    """(fingerprint finger, latent finger) per pair, half genuine and half impostor.

    A split's pairs are shared out evenly over the classes of their fingerprint (the remainder
    to classes drawn by the seed); within a class its fingers head pairs in turn, alternately
    genuine and impostor, and an impostor's latent comes from each other class in turn. Both
    sides of the pairs are so balanced over the classes, and genuine and impostor pairs differ
    in number by at most one per split.
    """
    n_classes = len(classes)
    by_split = {s: [f for f in fingers if f.split == s] for s in ("train", "test")}
    n_test = round(n_pairs * len(by_split["test"]) / len(fingers))
    n_test = min(max(2, n_test), n_pairs - 2) if n_pairs >= 4 else 0
    counts = {"train": n_pairs - n_test, "test": n_test}
    pairs = []
    rng = np.random.default_rng([seed, 1])
    for split in ("train", "test"):
        members = [[f for f in by_split[split] if f.pattern == c] for c in classes]
        for group in members:
            rng.shuffle(group)
        share = np.full(n_classes, counts[split] // n_classes)
        share[rng.permutation(n_classes)[: counts[split] % n_classes]] += 1
        per_class: list[list[tuple[Finger, Finger]]] = []
        genuine_first = True
        for i, group in enumerate(members):
            k = len(group)
            chosen = []
            for j in range(share[i]):
                turn = j // 2
                head = group[turn % k]
                if (j % 2 == 0) == genuine_first:
                    chosen.append((head, head))
                    continue
                if n_classes == 1:
                    mate = group[(turn + 1) % k]  # k >= 2: never the finger itself
                else:
                    other = (i + 1 + turn % (n_classes - 1)) % n_classes
                    mate = members[other][(turn // (n_classes - 1) + i) % len(members[other])]
                chosen.append((head, mate))
            if share[i] % 2:
                genuine_first = not genuine_first  # an odd class hands the extra to the other kind
            per_class.append(chosen)
        # Interleave the classes, so that any run of the manifest mixes them.
        longest = max((len(c) for c in per_class), default=0)
        pairs.extend(c[r] for r in range(longest) for c in per_class if r < len(c))
    return pairs


def _withheld(pairs: list[tuple[Finger, Finger]], fractions: dict[str, float], seed: int
              ) -> dict[str, set[int]]:
    """Which training pairs keep each task's label: Table 2's shares, stratified by class.

    The test split keeps every label (the paper tests orientation and matching on all pairs).
    """
    rng = np.random.default_rng([seed, 2])
    kept: dict[str, set[int]] = {}
    for task, fraction in fractions.items():
        side = 1 if task.startswith("lfp_") else 0
        strata: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            if pair[0].split == "train":
                strata.setdefault(pair[side].pattern, []).append(i)
        chosen: set[int] = set()
        for pattern in sorted(strata):
            rows = strata[pattern]
            take = round(fraction * len(rows))
            chosen.update(np.asarray(rows)[rng.permutation(len(rows))[:take]].tolist())
        kept[task] = chosen | {i for i, p in enumerate(pairs) if p[0].split == "test"}
    return kept


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG", compress_level=3)


def write_synthetic_fingerprints(
    root: Path,
    n_pairs: int,
    seed: int = 0,
    test_fraction: float = 0.2,
    label_fractions: dict[str, float] | None = None,
    classes: tuple[str, ...] = CLASSES,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write n_pairs synthetic pairs under root; returns the path of its `pairs.csv`.

    Layout: `pairs.csv`, `fingerprint/NNNNN.png`, `latent/NNNNN.png`, and the masks of the
    pairs whose segmentation label is kept in `fingerprint_mask/` and `latent_mask/` (255
    inside). `classes` are dealt evenly over the fingers; `label_fractions` (default Table 2's)
    is the share of training pairs that keep each task's label. The same arguments give the
    same bytes. root must not exist or be empty; it appears complete or not at all.
    """
    from dstcli.data.pair_manifest import write_pair_manifest

    root = Path(root)
    if n_pairs < 2:
        raise DataError(f"--synthetic {n_pairs}: ask for at least 2 pairs")
    if not 0 < test_fraction < 1:
        raise DataError(f"test fraction {test_fraction} must lie strictly between 0 and 1")
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown or not classes:
        raise DataError(f"unknown pattern classes {unknown}; choose among {', '.join(CLASSES)}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} already exists and is not empty; choose another folder")
    fractions = dict(TABLE2_LABEL_FRACTIONS if label_fractions is None else label_fractions)

    fingers = _plan_fingers(n_pairs, seed, test_fraction, tuple(classes))
    pairs = _plan_pairs(fingers, n_pairs, seed, tuple(classes))
    kept = _withheld(pairs, fractions, seed)

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        for sub in ("fingerprint", "latent", "fingerprint_mask", "latent_mask"):
            (tmp / sub).mkdir()
        masters: dict[int, Master] = {}
        rows = []
        for i, (head, mate) in enumerate(pairs):
            for f in (head, mate):
                if f.index not in masters:
                    masters[f.index] = make_master(f.pattern,
                                                   np.random.default_rng([seed, 3, f.index]))
            print_img, print_mask = render_impression(masters[head.index],
                                                      np.random.default_rng([seed, 4, i]))
            latent_img, latent_mask = render_latent(masters[mate.index],
                                                    np.random.default_rng([seed, 5, i]))
            name = f"{i + 1:05d}.png"
            _save_png(print_img, tmp / "fingerprint" / name)
            _save_png(latent_img, tmp / "latent" / name)
            row = {
                "fingerprint": f"fingerprint/{name}",
                "latent": f"latent/{name}",
                "fingerprint_orientation": head.pattern if i in kept["fp_orientation"] else "",
                "latent_orientation": mate.pattern if i in kept["lfp_orientation"] else "",
                "fingerprint_mask": "",
                "latent_mask": "",
                "match": ("1" if head is mate else "0") if i in kept["matching"] else "",
                "subject": mate.subject,
                "finger": mate.finger,
                "fingerprint_subject": head.subject,
                "fingerprint_finger": head.finger,
                "source": "synthetic",
                "split": head.split,
            }
            if i in kept["fp_segmentation"]:
                _save_png(print_mask.astype(np.uint8) * 255, tmp / "fingerprint_mask" / name)
                row["fingerprint_mask"] = f"fingerprint_mask/{name}"
            if i in kept["lfp_segmentation"]:
                _save_png(latent_mask.astype(np.uint8) * 255, tmp / "latent_mask" / name)
                row["latent_mask"] = f"latent_mask/{name}"
            rows.append(row)
            if progress is not None:
                progress(i + 1, len(pairs))
        write_pair_manifest(tmp / "pairs.csv", rows)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        if root.exists():
            root.rmdir()  # empty, checked above
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / "pairs.csv"
