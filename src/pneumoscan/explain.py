"""Grad-CAM heat maps: which parts of a film pushed the model towards PNEUMONIA.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the network's last convolutional stage
(``net.cam_layer``, exposed by every registered architecture) by the mean gradient of the
PNEUMONIA logit with respect to it and keeps the positive part of the weighted sum.  It runs in
float32 with the network in eval mode, on the torch engine only.

**How a map is scaled.**  Raw Grad-CAM has no absolute unit, and scaling each map to its own peak
would paint a bright red blob on every film, even one the model calls 0.6 % pneumonia.  So the map
shows *where* the evidence lies (Grad-CAM scaled to peak 1) times *how much* of it the whole film
holds: the calibrated probability of pneumonia.  A map's peak therefore equals the film's
probability: a confident NORMAL film stays dark blue everywhere (calm), a 50 % film peaks at
green, and only a film the model calls PNEUMONIA with confidence shows red.  Every written map
carries a colour bar of this 0-1 scale.

>>> from pneumoscan import Predictor
>>> from pneumoscan.explain import explain_file, overlay_png
>>> explanation = explain_file(Predictor.load(), "film.jpeg")
>>> png = overlay_png(explanation)    # the heat map over the original film
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from pneumoscan.atomic import atomic_write_bytes, output_folder
from pneumoscan.data.imageio import DecodedImage, read_image
from pneumoscan.engines.torch_engine import TorchEngine
from pneumoscan.errors import ImageReadError, InputRefusedError, PneumoscanError
from pneumoscan.predict import Prediction, Predictor
from pneumoscan.preprocess import crop_box, prepare, read_for_model, to_model_input

HEATMAP_ALPHA = 0.4
MAX_OVERLAY_SIDE = 1024
_CAM_LOCK = threading.Lock()  # the hook lives on a network that other threads may share


@dataclass
class Explanation:
    """A prediction with its Grad-CAM heat map.

    ``heatmap`` is float32 ``(S, S)`` in [0, 1] in model-input coordinates (after crop and resize):
    the Grad-CAM map scaled so that its peak is the film's probability of pneumonia;
    ``overlay`` is uint8 RGB ``(H, W, 3)``: the heat map over the original image, mapped back
    through the centre crop (no colour outside it), at most :data:`MAX_OVERLAY_SIDE` pixels a side.
    """

    prediction: Prediction
    heatmap: np.ndarray
    overlay: np.ndarray


def grad_cam(net: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Grad-CAM of the logit at ``net.cam_layer`` for a model-input batch ``(N, C, S, S)``.

    Returns float32 ``(N, S, S)``, each map scaled so that its peak is 1 (all zeros if nothing
    in the image raised the logit).
    """
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor | None:
        if not output.requires_grad:  # another thread's inference pass
            return None
        captured.append(output)
        return output.clone()  # later in-place operations then cannot touch the captured tensor

    with _CAM_LOCK, torch.enable_grad():
        handle = net.cam_layer.register_forward_hook(keep)  # type: ignore[union-attr]
        try:
            logits = net(torch.from_numpy(batch).float().requires_grad_(True))
            (grads,) = torch.autograd.grad(logits.sum(), captured[0])
        finally:
            handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * captured[0].detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(batch.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    return (cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)).numpy().astype(np.float32)


def explain_image(
    predictor: Predictor, image: DecodedImage, name: str = "image", *, model_image: DecodedImage | None = None
) -> Explanation:
    """Predict one decoded image and compute its Grad-CAM heat map and overlay.

    The overlay is drawn on ``image``; the model sees ``model_image`` when given (the same film
    decoded by :func:`~pneumoscan.preprocess.read_for_model`, as predictions are), else ``image``.
    """
    net = _network(predictor)
    cfg = predictor.meta.preprocess
    seen = model_image if model_image is not None else image
    prediction = predictor.predict_images([seen], [name])[0]
    heatmap = grad_cam(net, to_model_input(prepare(seen, cfg), cfg))[0] * np.float32(prediction.probability)
    return Explanation(prediction, heatmap, _overlay(image.pixels, heatmap, cfg.crop_fraction))


def explain_file(predictor: Predictor, path: str | os.PathLike[str]) -> Explanation:
    """:func:`explain_image` of a file: full resolution for the overlay, model input as in prediction."""
    model_image = read_for_model(path, predictor.meta.preprocess, accept_refused=not predictor.refuse)
    return explain_image(predictor, read_image(path, accept_refused=True), str(path), model_image=model_image)


def explain_files(
    predictor: Predictor, paths: Iterable[str | os.PathLike[str]], out_dir: str | Path
) -> list[Prediction]:
    """Predict files and write ``OUT_DIR/<stem>_heatmap.png`` for each readable one the model does not refuse.

    Predictions come back in the input order with ``heatmap_path`` set; unreadable files come back
    with ``error`` set, as from :meth:`Predictor.predict_files`; refused images get no heat map (with
    a predictor made with ``refuse=False`` they get one).  Repeated stems get ``-2``, ``-3``...
    """
    _network(predictor)  # refuse an ONNX predictor before reading anything
    out = output_folder(out_dir)
    used: set[str] = set()
    results: list[Prediction] = []
    for path in paths:
        try:
            explanation = explain_file(predictor, path)
        except InputRefusedError as exc:
            results.append(Prediction.of_refused_file(str(path), exc))
            continue
        except ImageReadError as exc:
            results.append(Prediction(str(path), error=str(exc)))
            continue
        if explanation.prediction.refused:
            results.append(explanation.prediction)
            continue
        target = out / _unique_name(Path(path).stem, used)
        atomic_write_bytes(target, overlay_png(explanation))
        explanation.prediction.heatmap_path = str(target)
        results.append(explanation.prediction)
    return results


def overlay_png(explanation: Explanation, max_side: int = MAX_OVERLAY_SIDE) -> bytes:
    """PNG bytes of the overlay with a colour bar at its right; the overlay is downscaled so
    that its longest side is at most ``max_side``."""
    picture = Image.fromarray(explanation.overlay)
    picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return png_bytes(with_colour_bar(picture))


def film_png(image: DecodedImage, max_side: int = MAX_OVERLAY_SIDE) -> bytes:
    """PNG bytes of the film itself in grayscale, at most ``max_side`` a side (to show beside its overlay)."""
    picture = Image.fromarray(np.clip(np.rint(image.pixels * 255.0), 0, 255).astype(np.uint8))
    picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return png_bytes(picture)


def png_bytes(picture: Image.Image) -> bytes:
    """``picture`` encoded as PNG."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def with_colour_bar(picture: Image.Image) -> Image.Image:
    """``picture`` with a black panel on its right: the heat-map colours from 0 (bottom) to 1 (top)."""
    height = picture.height
    font_size = min(20, max(10, height // 20))
    margin = font_size // 2 + 2
    bar_height = max(2, height - 2 * margin)
    font = ImageFont.load_default(size=font_size)
    labels = ("1.0", "0.5", "0.0")
    text_width = max(int(font.getlength(text)) for text in labels)
    width = picture.width + margin + font_size + 4 + text_width + margin
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(picture.convert("RGB"), (0, 0))
    values = np.linspace(1.0, 0.0, bar_height, dtype=np.float32)
    colours = np.repeat(_jet(values)[:, None, :], font_size, axis=1)
    bar_left = picture.width + margin
    canvas.paste(Image.fromarray(np.rint(colours * 255).astype(np.uint8)), (bar_left, margin))
    draw = ImageDraw.Draw(canvas)
    for text, fraction in zip(labels, (0.0, 0.5, 1.0), strict=True):
        y = margin + fraction * (bar_height - 1)
        draw.text((bar_left + font_size + 4, y), text, fill=(255, 255, 255), font=font, anchor="lm")
    return canvas


def _network(predictor: Predictor) -> nn.Module:
    if not isinstance(predictor.engine, TorchEngine):
        raise PneumoscanError(
            f"{predictor.meta.model_id()}: heat maps need the torch engine; "
            "use the .safetensors model file without --engine onnx"
        )
    return predictor.engine.net


def _overlay(pixels: np.ndarray, heatmap: np.ndarray, crop_fraction: float) -> np.ndarray:
    """The heat map in jet colours over the grayscale image, inside the centre crop only."""
    height, width = pixels.shape
    scale = min(1.0, MAX_OVERLAY_SIDE / max(height, width))
    gray = _resize(pixels, max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = np.repeat(gray[..., None], 3, axis=2)
    top, left, keep_h, keep_w = crop_box(height, width, crop_fraction)
    top, left = round(top * scale), round(left * scale)
    region = rgb[top : top + max(1, round(keep_h * scale)), left : left + max(1, round(keep_w * scale))]
    heat = _resize(heatmap, region.shape[1], region.shape[0])
    region[:] = (1.0 - HEATMAP_ALPHA) * region + HEATMAP_ALPHA * _jet(heat)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _resize(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a 2-D float array to ``(height, width)``."""
    picture = Image.fromarray(np.asarray(values, dtype=np.float32))
    return np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _jet(values: np.ndarray) -> np.ndarray:
    """Jet-like colours (dark blue at 0, cyan, yellow, dark red at 1) as floats ``(..., 3)``."""
    return np.clip(1.5 - np.abs(4.0 * values[..., None] - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


def _output_dir(out: Path) -> Path:
    return output_folder(out)
    return out


def _unique_name(stem: str, used: set[str]) -> str:
    """``<stem>_heatmap.png``, numbered if taken (compared case-insensitively, as on macOS/Windows)."""
    name, number = f"{stem}_heatmap.png", 1
    while name.lower() in used:
        number += 1
        name = f"{stem}-{number}_heatmap.png"
    used.add(name.lower())
    return name
