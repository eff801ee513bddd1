"""Images that are not frontal chest films, for training and checking the refusal gate.

:func:`generate_negatives` draws a bank of procedurally generated images, offline and from a seed:

* ``noise``: uniform, Gaussian, salt-and-pepper and 1/f ("pink") noise, the statistics of textures;
* ``gradient``: linear and radial ramps, flat fields with a little noise;
* ``shapes``: rectangles, ellipses, polygons and lines on plain or noisy backgrounds (diagrams, logos);
* ``text``: lines of random characters at random sizes, dark on light or light on dark (documents);
* ``chart``: line, bar, scatter, pie and histogram plots rendered with matplotlib (charts, slides);
* ``ct``: an axial CT-like slice: a bright-rimmed body ellipse with organs and two dark lungs on black;
* ``limb``: X-ray-like bones of a limb, hand or joint: bright rods and knuckles in soft tissue on dark;
* ``skull``: a bright elliptical vault with texture, or an arc of teeth (head and dental films);
* ``photo``: random crops of the few photographs, terrain maps and the MRI slice that scikit-learn and
  matplotlib ship, rotated, flipped and contrast-changed.

None of them is a real radiograph of another body part: real negatives (``gate.negatives`` folders,
e.g. knee X-rays) are added to the bank by the data module, and chest films turned into non-chest
images (inverted, rotated, tiny zoomed crops) are made on the fly by the training module.  Every
image is grayscale ``uint8`` of ``side`` x ``side`` pixels, like the training cache.
"""

from __future__ import annotations

import gzip
import string
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Generator = Callable[[np.random.Generator, int], np.ndarray]


def generate_negatives(count: int, side: int, seed: int = 0) -> np.ndarray:
    """``count`` generated non-chest images, ``(count, side, side)`` uint8, kinds in equal shares."""
    rng = np.random.default_rng(seed)
    kinds = list(GENERATORS.values())
    out = np.empty((count, side, side), dtype=np.uint8)
    for i in range(count):
        image = kinds[i % len(kinds)](rng, side)
        out[i] = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return out


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return ((values - low) / (high - low if high > low else 1.0)).astype(np.float32)


def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, side, dtype=np.float32)
    return np.meshgrid(axis, axis)


def _pink(rng: np.random.Generator, side: int, exponent: float) -> np.ndarray:
    freq_y = np.fft.fftfreq(side)[:, None]
    freq_x = np.fft.rfftfreq(side)[None, :]
    radius = np.sqrt(freq_x**2 + freq_y**2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius**exponent
    return _unit(np.fft.irfft2(spectrum, s=(side, side)))


def _noise(rng: np.random.Generator, side: int) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return rng.random((side, side), dtype=np.float32)
    if kind == 1:
        return np.clip(rng.normal(rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.3), (side, side)), 0, 1)
    if kind == 2:
        image = np.full((side, side), rng.uniform(0.2, 0.8), dtype=np.float32)
        dots = rng.random((side, side))
        image[dots < 0.05] = 0.0
        image[dots > 0.95] = 1.0
        return image
    return _pink(rng, side, rng.uniform(0.8, 2.2))


def _gradient(rng: np.random.Generator, side: int) -> np.ndarray:
    x, y = _grid(side)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        image = _unit(np.cos(angle) * x + np.sin(angle) * y)
    else:
        cx, cy = rng.uniform(-0.8, 0.8, 2)
        image = _unit(-np.hypot(x - cx, y - cy))
    image = image * rng.uniform(0.2, 1.0) + rng.uniform(0, 0.5)
    return np.clip(image + rng.normal(0, rng.uniform(0, 0.04), image.shape), 0, 1)


def _random_fill(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 256))


def _shapes(rng: np.random.Generator, side: int) -> np.ndarray:
    canvas = Image.new("L", (side, side), _random_fill(rng))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 12)):
        x0, x1 = sorted(int(v) for v in rng.integers(0, side, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, side, 2))
        box = (x0, y0, x1 + 2, y1 + 2)
        kind, fill = rng.integers(4), _random_fill(rng)
        if kind == 0:
            draw.rectangle(box, fill=fill)
        elif kind == 1:
            draw.ellipse(box, fill=fill)
        elif kind == 2:
            draw.polygon(
                [(int(a), int(b)) for a, b in rng.integers(0, side, (int(rng.integers(3, 7)), 2))], fill=fill
            )
        else:
            draw.line(box, fill=fill, width=int(rng.integers(1, 6)))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _text(rng: np.random.Generator, side: int) -> np.ndarray:
    light = rng.random() < 0.7
    canvas = Image.new("L", (side, side), int(rng.integers(200, 256)) if light else int(rng.integers(0, 60)))
    draw = ImageDraw.Draw(canvas)
    size = int(rng.integers(max(6, side // 24), max(8, side // 6)))
    font = ImageFont.load_default(size=size)
    ink = int(rng.integers(0, 80)) if light else int(rng.integers(180, 256))
    alphabet = string.ascii_letters + string.digits + "  .,:%-"
    y = int(rng.integers(0, size))
    while y < side:
        line = "".join(rng.choice(list(alphabet), int(rng.integers(5, 40))))
        draw.text((int(rng.integers(0, side // 4)), y), line, fill=ink, font=font)
        y += int(size * rng.uniform(1.1, 2.0))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _chart(rng: np.random.Generator, side: int) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2), dpi=max(32, side // 2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    kind = rng.integers(5)
    n = int(rng.integers(4, 30))
    if kind == 0:
        for _ in range(rng.integers(1, 4)):
            axes.plot(np.cumsum(rng.normal(size=n)))
    elif kind == 1:
        axes.bar(range(n), rng.random(n))
    elif kind == 2:
        axes.scatter(rng.normal(size=n * 3), rng.normal(size=n * 3), s=4)
    elif kind == 3:
        axes.pie(rng.random(int(rng.integers(2, 7))))
    else:
        axes.hist(rng.normal(size=200), bins=n)
    if rng.random() < 0.5:
        axes.set_title("".join(rng.choice(list(string.ascii_letters), 8)))
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0  # type: ignore[attr-defined]
    gray = Image.fromarray(rgba.mean(axis=2)).resize((side, side), Image.Resampling.BILINEAR)
    image = np.asarray(gray, dtype=np.float32)
    return 1.0 - image if rng.random() < 0.2 else image


def _blur(image: np.ndarray, radius: float) -> np.ndarray:
    from PIL import ImageFilter

    pil = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _ct(rng: np.random.Generator, side: int) -> np.ndarray:
    x, y = _grid(side)
    a, b = rng.uniform(0.6, 0.95), rng.uniform(0.45, 0.8)
    body = (x / a) ** 2 + (y / b) ** 2
    image = np.where(body < 1, 0.45 + 0.1 * _pink(rng, side, 2.0), 0.0)
    image = np.where((body > 0.85) & (body < 1), 0.55, image)  # fat and skin rim
    image = np.where((body > 0.72) & (body < 0.78), 0.9, image)  # ribs / bone ring
    if rng.random() < 0.6:  # chest slice: two dark lungs
        for sign in (-1, 1):
            lung = ((x - sign * a * 0.45) / (a * 0.33)) ** 2 + ((y + 0.05) / (b * 0.6)) ** 2
            image = np.where(lung < 1, 0.08 + 0.05 * rng.random(), image)
    else:  # abdomen: organs
        for _ in range(rng.integers(2, 6)):
            cx, cy, r = rng.uniform(-0.5, 0.5), rng.uniform(-0.4, 0.4), rng.uniform(0.08, 0.3)
            image = np.where(np.hypot(x - cx, y - cy) < r, rng.uniform(0.3, 0.7), image)
    spine = np.hypot(x, y - b * 0.7) < 0.09
    image = np.where(spine, 1.0, image)
    return np.clip(_blur(image, side / 150) + rng.normal(0, 0.02, image.shape), 0, 1)


def _limb(rng: np.random.Generator, side: int) -> np.ndarray:
    canvas = Image.new("L", (side, side), int(rng.integers(0, 40)))
    draw = ImageDraw.Draw(canvas)
    bones = int(rng.integers(1, 6))
    width = side / rng.uniform(5, 12) / (1 + bones / 4)
    for i in range(bones):
        cx = side * (0.5 + (i - (bones - 1) / 2) * rng.uniform(0.12, 0.22))
        length = side * rng.uniform(0.3, 0.9)
        top = rng.uniform(0, side - length)
        tissue = width * rng.uniform(1.6, 2.4)
        draw.rounded_rectangle(
            (cx - tissue, top - tissue, cx + tissue, top + length + tissue), radius=tissue, fill=90
        )
        draw.rounded_rectangle(
            (cx - width / 2, top, cx + width / 2, top + length), radius=width / 2, fill=200
        )
        for end in (top, top + length):  # condyles / knuckles
            draw.ellipse((cx - width, end - width * 0.8, cx + width, end + width * 0.8), fill=215)
    image = np.asarray(canvas.rotate(float(rng.uniform(-40, 40)), resample=Image.Resampling.BILINEAR))
    image = _blur(image.astype(np.float32) / 255.0, side / 120)
    return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)


def _skull(rng: np.random.Generator, side: int) -> np.ndarray:
    x, y = _grid(side)
    if rng.random() < 0.6:  # skull
        a, b = rng.uniform(0.6, 0.9), rng.uniform(0.65, 0.95)
        r = (x / a) ** 2 + (y / b) ** 2
        image = np.where(r < 1, 0.35 + 0.2 * _pink(rng, side, 1.5), 0.05)
        image = np.where((r > 0.8) & (r < 1), 0.85, image)
    else:  # dental arc
        image = np.full((side, side), 0.15, dtype=np.float32) + 0.1 * _pink(rng, side, 2.0)
        for k in range(int(rng.integers(10, 17))):
            t = np.pi * (0.1 + 0.8 * k / 16)
            cx, cy = 0.7 * np.cos(t), 0.5 - 0.6 * np.sin(t)
            tooth = (np.abs(x - cx) < 0.045) & (np.abs(y - cy) < 0.16)
            image = np.where(tooth, 0.8 + 0.15 * rng.random(), image)
    return np.clip(_blur(image, side / 150) + rng.normal(0, 0.02, image.shape), 0, 1)


@cache
def _photo_sources() -> tuple[np.ndarray, ...]:
    """The photographs, terrain maps and MRI slice shipped by scikit-learn and matplotlib, gray in [0, 1]."""
    sources: list[np.ndarray] = []
    try:
        import sklearn.datasets

        images = Path(sklearn.datasets.__file__).parent / "images"
        sources += [_gray_file(p) for p in sorted(images.glob("*.jpg"))]
    except ImportError:
        pass
    try:
        import matplotlib

        sample = Path(matplotlib.get_data_path()) / "sample_data"
        sources += [_gray_file(sample / n) for n in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")]
        sources += [_unit(np.load(sample / "jacksboro_fault_dem.npz")["elevation"].astype(np.float32))]
        sources += [_unit(np.load(sample / "topobathy.npz")["topo"].astype(np.float32))]
        mri = np.frombuffer(gzip.decompress((sample / "s1045.ima.gz").read_bytes()), np.uint16)
        sources += [_unit(mri.reshape(256, 256).astype(np.float32))]
    except (ImportError, OSError, KeyError, ValueError):
        pass
    return tuple(s for s in sources if min(s.shape) >= 32)


def _gray_file(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _photo(rng: np.random.Generator, side: int) -> np.ndarray:
    sources = _photo_sources()
    if not sources:
        return _pink(rng, side, 1.8)
    source = sources[int(rng.integers(len(sources)))]
    height, width = source.shape
    crop = int(min(height, width) * rng.uniform(0.3, 1.0))
    top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    patch = Image.fromarray(source[top : top + crop, left : left + crop]).resize((side, side))
    image = np.asarray(patch.rotate(float(rng.choice([0, 90, 180, 270]))), dtype=np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = np.clip(image, 0, 1) ** rng.uniform(0.6, 1.6)
    return 1.0 - image if rng.random() < 0.25 else image


GENERATORS: dict[str, Generator] = {
    "noise": _noise,
    "gradient": _gradient,
    "shapes": _shapes,
    "text": _text,
    "chart": _chart,
    "ct": _ct,
    "limb": _limb,
    "skull": _skull,
    "photo": _photo,
}
