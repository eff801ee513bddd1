"""Heat maps: which parts of a film pushed the model towards PNEUMONIA.

Every map -- CLI overlays, the report, the web page, the REST API and the DICOM Secondary Capture --
comes from :func:`heat_maps`, made the way the model file says (its ``explain`` section,
:class:`~pneumoscan.config.ExplainConfig`), in float32 with the network in eval mode, on the torch
engine only.  The methods, all of the gradient of the PNEUMONIA logit with respect to a feature stage
(``net.cam_layers``, exposed by every registered architecture), keeping the positive part:

* ``gradcam`` (Selvaraju et al., 2017): channels weighted by their mean gradient;
* ``gradcam++`` (Chattopadhay et al., 2018): channels weighted by their positive gradients with
  second-order pixel weights, so that several separate regions of evidence each show;
* ``layercam`` (Jiang et al., 2021): every cell weighted by its own positive gradient, which keeps
  the detail of earlier, finer stages.

A map of several stages (``layers``) is the mean or the product of the stages' maps, each scaled to
peak 1; ``smoothing`` averages the maps of shifted (and mirrored) copies of the input, each mapped
back.  A map lives on the model's input; :func:`~pneumoscan.preprocess.model_view` maps it back
onto the film.

**How a map is scaled.**  Raw Grad-CAM has no absolute unit, and scaling each map to its own peak
would paint a bright red blob on every film, even one the model calls 0.6 % pneumonia.  So the map
shows *where* the evidence lies (the map scaled to peak 1) times *how much* of it the whole film
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from pneumoscan.atomic import atomic_write_bytes, output_folder
from pneumoscan.config import ExplainConfig
from pneumoscan.data.imageio import DecodedImage, read_image
from pneumoscan.engines.torch_engine import TorchEngine
from pneumoscan.errors import ImageReadError, InputRefusedError, PneumoscanError
from pneumoscan.predict import Prediction, Predictor
from pneumoscan.preprocess import ModelView, model_view, prepare, read_for_model, to_model_input

HEATMAP_ALPHA = 0.4
MAX_OVERLAY_SIDE = 1024
SHIFT_FRACTION = 1 / 32  # test-time smoothing moves the input this share of its side
BOX_COLOUR = (255, 255, 255)
_CAM_LOCK = threading.Lock()  # the hooks live on a network that other threads may share
_Move = tuple[int, int, bool]  # (down, across, mirrored)


@dataclass
class Explanation:
    """A prediction with its heat map.

    ``heatmap`` is float32 ``(S, S)`` in [0, 1] in model-input coordinates (after crop and resize):
    the map scaled so that its peak is the film's probability of pneumonia; ``view`` says where the
    model's input lies on ``film`` (the image the overlay is drawn on, float32 grayscale).
    """

    prediction: Prediction
    heatmap: np.ndarray
    view: ModelView
    film: np.ndarray

    @cached_property
    def overlay(self) -> np.ndarray:
        """uint8 RGB ``(H, W, 3)``: the heat map over the film, mapped back through the centre crop (no
        colour outside it), at the film's resolution up to :data:`MAX_OVERLAY_SIDE` pixels a side."""
        return _overlay(self.film, self.heatmap, self.view)

    def peak_on_film(self) -> tuple[float, float]:
        """``(x, y)`` of the map's peak (the centre of its pixel) in the film's pixels."""
        row, col = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        return self.view.point_to_film(col + 0.5, row + 0.5)


def heat_maps(net: nn.Module, batch: np.ndarray, explain: ExplainConfig | None = None) -> np.ndarray:
    """The heat maps ``explain`` describes (default: Grad-CAM of the last stage) for a model-input batch
    ``(N, C, S, S)``.

    Returns float32 ``(N, S, S)``, each map scaled so that its peak is 1 (all zeros if nothing in the
    image raised the logit).  All shifted copies go through the network as one batch.
    """
    explain = explain or ExplainConfig()
    inputs = torch.from_numpy(batch).float()
    moves = _moves(explain.smoothing, inputs.shape[-1])
    features, gradients = _features_and_gradients(
        net, torch.cat([_move(inputs, move) for move in moves]), _stages(net, explain.layers)
    )
    per_stage = [
        _peak_one(_upsample(_cam(a, g, explain.method), inputs.shape[-2:]))
        for a, g in zip(features, gradients, strict=True)
    ]
    stacked = torch.stack(per_stage)
    maps = stacked.mean(dim=0) if explain.combine == "mean" else stacked.prod(dim=0)
    count = len(batch)
    undone = [_move(maps[i * count : (i + 1) * count], move, undo=True) for i, move in enumerate(moves)]
    return _peak_one(torch.stack(undone).mean(dim=0)).numpy().astype(np.float32)


def explain_image(
    predictor: Predictor, image: DecodedImage, name: str = "image", *, model_image: DecodedImage | None = None
) -> Explanation:
    """Predict one decoded image and compute its heat map (the overlay is drawn when first asked for).

    The overlay is drawn on ``image``; the model sees ``model_image`` when given (the same film
    decoded by :func:`~pneumoscan.preprocess.read_for_model`, as predictions are), else ``image``.
    """
    net = require_torch_engine(predictor)
    meta = predictor.meta
    cfg = meta.preprocess
    seen = model_image if model_image is not None else image
    prediction = predictor.predict_images([seen], [name])[0]
    heatmap = heat_maps(net, to_model_input(prepare(seen, cfg), cfg), meta.explain)[0]
    view = model_view(image.pixels.shape, cfg, seen.pixels.shape)
    return Explanation(prediction, heatmap * np.float32(prediction.probability), view, image.pixels)


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
    require_torch_engine(predictor)  # refuse an ONNX predictor before reading anything
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


def overlay_png(
    explanation: Explanation, max_side: int = MAX_OVERLAY_SIDE, boxes: Sequence[Sequence[float]] = ()
) -> bytes:
    """PNG bytes of the overlay with a colour bar at its right; the overlay is downscaled so
    that its longest side is at most ``max_side``.

    ``boxes``: ``(x, y, width, height)`` rectangles in the film's pixels (e.g. radiologists' boxes),
    drawn in white with the map's peak as a white cross.
    """
    picture = Image.fromarray(explanation.overlay)
    if len(boxes):
        _draw_boxes(picture, explanation, boxes)
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


def require_torch_engine(predictor: Predictor) -> nn.Module:
    """The predictor's network; heat maps need gradients, so an ONNX predictor is refused in one line."""
    if not isinstance(predictor.engine, TorchEngine):
        raise PneumoscanError(
            f"{predictor.meta.model_id()}: heat maps need the torch engine; "
            "use the .safetensors model file without --engine onnx"
        )
    return predictor.engine.net


def _stages(net: nn.Module, layers: Sequence[int]) -> list[nn.Module]:
    stages: list[nn.Module] = net.cam_layers  # type: ignore[assignment]
    if -min(layers) > len(stages):
        raise PneumoscanError(
            f"explain.layers {list(layers)}: this {type(net).__name__} has {len(stages)} feature stages "
            f"(-1 to -{len(stages)})"
        )
    return [stages[layer] for layer in layers]


def _features_and_gradients(
    net: nn.Module, inputs: torch.Tensor, stages: list[nn.Module]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The outputs of ``stages`` and the gradients of the summed logits with respect to them."""
    captured: dict[int, torch.Tensor] = {}

    def keeper(index: int) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor | None]:
        def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor | None:
            if not output.requires_grad:  # another thread's inference pass
                return None
            captured[index] = output
            return output.clone()  # later in-place operations then cannot touch the captured tensor

        return keep

    with _CAM_LOCK, torch.enable_grad():
        handles = [stage.register_forward_hook(keeper(i)) for i, stage in enumerate(stages)]
        try:
            logits = net(inputs.requires_grad_(True))
            features = [captured[i] for i in range(len(stages))]
            gradients = torch.autograd.grad(logits.sum(), features)
        finally:
            for handle in handles:
                handle.remove()
    return [feature.detach() for feature in features], list(gradients)


def _cam(features: torch.Tensor, gradients: torch.Tensor, method: str) -> torch.Tensor:
    """The positive evidence map ``(N, 1, h, w)`` of one stage's ``(N, C, h, w)`` features."""
    if method == "layercam":
        return torch.relu((torch.relu(gradients) * features).sum(dim=1, keepdim=True))
    if method == "gradcam++":
        squared = gradients**2
        denominator = 2 * squared + features.sum(dim=(2, 3), keepdim=True) * squared * gradients
        alpha = torch.where(denominator != 0, squared / denominator, torch.zeros_like(squared))
        weights = (alpha * torch.relu(gradients)).sum(dim=(2, 3), keepdim=True)
    else:
        weights = gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * features).sum(dim=1, keepdim=True))


def _upsample(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(cam, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def _peak_one(maps: torch.Tensor) -> torch.Tensor:
    return maps / maps.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def _moves(smoothing: str, side: int) -> list[_Move]:
    """The input copies of test-time ``smoothing``: the input itself first."""
    if smoothing == "none":
        return [(0, 0, False)]
    step = max(1, round(side * SHIFT_FRACTION))
    shifted: list[_Move] = [(down, across, False) for down in (-step, step) for across in (-step, step)]
    return [(0, 0, False), *shifted, *([(0, 0, True)] if smoothing == "shift+flip" else [])]


def _move(images: torch.Tensor, move: _Move, undo: bool = False) -> torch.Tensor:
    """``images (..., S, S)`` shifted by ``(down, across)`` pixels (edges repeated) and mirrored left-right,
    or with ``undo`` moved back."""
    down, across, mirrored = move
    if undo:
        down, across = -down, -across
    if mirrored:
        images = images.flip(-1)
    rows = (torch.arange(images.shape[-2]) - down).clamp(0, images.shape[-2] - 1)
    cols = (torch.arange(images.shape[-1]) - across).clamp(0, images.shape[-1] - 1)
    return images[..., rows, :][..., cols]


def _draw_boxes(picture: Image.Image, explanation: Explanation, boxes: Sequence[Sequence[float]]) -> None:
    """Draw film-pixel ``boxes`` and the map's peak on ``picture`` (the overlay, at its own scale)."""
    scale = picture.width / explanation.view.film_width
    draw = ImageDraw.Draw(picture)
    line = max(1, round(picture.width / 256))
    for x, y, width, height in boxes:
        corners = [x * scale, y * scale, (x + width) * scale - 1, (y + height) * scale - 1]
        draw.rectangle(corners, outline=BOX_COLOUR, width=line)
    px, py = (value * scale for value in explanation.peak_on_film())
    arm = 4 * line
    draw.line([(px - arm, py), (px + arm, py)], fill=BOX_COLOUR, width=line)
    draw.line([(px, py - arm), (px, py + arm)], fill=BOX_COLOUR, width=line)


def _overlay(pixels: np.ndarray, heatmap: np.ndarray, view: ModelView) -> np.ndarray:
    """The heat map in jet colours over the grayscale film, inside the model's view only."""
    height, width = pixels.shape
    scale = min(1.0, MAX_OVERLAY_SIDE / max(height, width))
    shown_w, shown_h = max(1, round(width * scale)), max(1, round(height * scale))
    gray = _resize(pixels, shown_w, shown_h)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    across, down = shown_w / width, shown_h / height
    top, left = round(view.top * down), round(view.left * across)
    bottom = max(top + 1, round((view.top + view.height) * down))
    right = max(left + 1, round((view.left + view.width) * across))
    region = rgb[top:bottom, left:right]
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


def _unique_name(stem: str, used: set[str]) -> str:
    """``<stem>_heatmap.png``, numbered if taken (compared case-insensitively, as on macOS/Windows)."""
    name, number = f"{stem}_heatmap.png", 1
    while name.lower() in used:
        number += 1
        name = f"{stem}-{number}_heatmap.png"
    used.add(name.lower())
    return name
