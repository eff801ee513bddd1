"""The decoded-image cache: built once, invalidated by changed files and settings, failures reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pneumoscan.config import PreprocessConfig
from pneumoscan.data import cache
from pneumoscan.data.cache import load_cached
from pneumoscan.preprocess import load_prepared

CFG = PreprocessConfig(image_size=32, channels=1)


def write_film(path: Path, seed: int, size: int = 48) -> Path:
    """A random gray PNG (different seeds give clearly different pixels)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def films(tmp_path: Path) -> list[str]:
    folder = tmp_path / "films"
    folder.mkdir()
    return [str(write_film(folder / f"f{i}.png", i)) for i in range(6)]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the cache decodes, in call order."""
    calls: list[str] = []

    def counting(path: str, cfg: PreprocessConfig) -> np.ndarray:
        calls.append(path)
        return load_prepared(path, cfg)

    monkeypatch.setattr(cache, "load_prepared", counting)
    return calls


def assert_aligned(result: cache.CachedImages, cfg: PreprocessConfig = CFG) -> None:
    """Each row of ``pixels`` is the prepared image of the path at the same position."""
    assert result.pixels.shape == (len(result.paths), cfg.image_size, cfg.image_size)
    assert result.pixels.dtype == np.uint8
    for row, path in zip(result.pixels, result.paths, strict=True):
        np.testing.assert_array_equal(row, load_prepared(path, cfg), err_msg=path)


def test_built_once(films: list[str], decodes: list[str], tmp_path: Path) -> None:
    first = load_cached(films, CFG, tmp_path / "cache", progress=False)
    assert sorted(decodes) == sorted(films)
    decodes.clear()
    second = load_cached(films, CFG, tmp_path / "cache", progress=False)
    assert decodes == []
    assert second.paths == films and second.failures == {}
    np.testing.assert_array_equal(first.pixels, second.pixels)
    assert_aligned(second)


def test_rows_follow_the_order_of_the_paths_asked_for(films: list[str], tmp_path: Path) -> None:
    load_cached(films, CFG, tmp_path / "cache", progress=False)
    shuffled = [films[i] for i in (4, 0, 5, 2, 1, 3)]
    result = load_cached(shuffled, CFG, tmp_path / "cache", progress=False)
    assert result.paths == shuffled
    assert_aligned(result)
    assert len({row.tobytes() for row in result.pixels}) == len(films)  # all different images


def test_changed_file_is_decoded_again(films: list[str], decodes: list[str], tmp_path: Path) -> None:
    before = load_cached(films, CFG, tmp_path / "cache", progress=False)
    old_row = np.array(before.pixels[2])
    write_film(Path(films[2]), seed=100)
    stat = os.stat(films[2])
    os.utime(films[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    decodes.clear()

    after = load_cached(films, CFG, tmp_path / "cache", progress=False)

    assert decodes == [films[2]]
    assert not np.array_equal(after.pixels[2], old_row)
    np.testing.assert_array_equal(after.pixels[2], load_prepared(films[2], CFG))
    np.testing.assert_array_equal(after.pixels[0], before.pixels[0])
    assert_aligned(after)


def test_new_file_added_to_the_store(films: list[str], decodes: list[str], tmp_path: Path) -> None:
    load_cached(films[:4], CFG, tmp_path / "cache", progress=False)
    decodes.clear()
    result = load_cached(films, CFG, tmp_path / "cache", progress=False)
    assert sorted(decodes) == sorted(films[4:])
    assert_aligned(result)


@pytest.mark.parametrize(
    "other",
    [PreprocessConfig(image_size=40, channels=1), PreprocessConfig(image_size=32, crop_fraction=0.5)],
    ids=["image_size", "crop_fraction"],
)
def test_other_preprocessing_is_cached_separately(
    films: list[str], decodes: list[str], tmp_path: Path, other: PreprocessConfig
) -> None:
    load_cached(films, CFG, tmp_path / "cache", progress=False)
    decodes.clear()
    result = load_cached(films, other, tmp_path / "cache", progress=False)
    assert sorted(decodes) == sorted(films)
    assert_aligned(result, other)
    decodes.clear()
    assert_aligned(load_cached(films, CFG, tmp_path / "cache", progress=False))  # the first store survives
    assert decodes == []


def test_lost_pixel_store_is_rebuilt(films: list[str], tmp_path: Path) -> None:
    load_cached(films, CFG, tmp_path / "cache", progress=False)
    (store,) = (tmp_path / "cache").iterdir()
    for pixels in store.glob("pixels-*.npy"):
        pixels.unlink()
    result = load_cached(films, CFG, tmp_path / "cache", progress=False)
    assert result.paths == films
    assert_aligned(result)


def test_unreadable_files_are_reported_and_skipped(
    films: list[str], decodes: list[str], tmp_path: Path
) -> None:
    folder = Path(films[0]).parent
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    truncated = folder / "truncated.jpeg"
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:300])
    text = folder / "notes.png"
    text.write_text("this is not an image\n")
    paths = [films[0], str(corrupt), films[1], str(truncated), str(text), films[2]]

    result = load_cached(paths, CFG, tmp_path / "cache", progress=False)

    assert result.paths == [films[0], films[1], films[2]]
    assert set(result.failures) == {str(corrupt), str(truncated), str(text)}
    for path, message in result.failures.items():
        assert message.startswith(path) and "\n" not in message
    assert_aligned(result)

    decodes.clear()  # failures are remembered, not retried, while the files are unchanged
    again = load_cached(paths, CFG, tmp_path / "cache", progress=False)
    assert decodes == [] and again.failures == result.failures and again.paths == result.paths

    write_film(text, seed=7)  # fixed: decoded again and returned
    again = load_cached(paths, CFG, tmp_path / "cache", progress=False)
    assert decodes == [str(text)]
    assert again.paths == [films[0], films[1], str(text), films[2]]
    assert set(again.failures) == {str(corrupt), str(truncated)}
    assert_aligned(again)


def test_all_unreadable_gives_empty_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    result = load_cached([str(bad)], CFG, tmp_path / "cache", progress=False)
    assert result.pixels.shape == (0, 32, 32)
    assert result.paths == [] and list(result.failures) == [str(bad)]


def rebuild_from_scratch(paths: list[str], cache_dir: Path) -> None:
    """What another process does that builds the same store from a cold cache at the same time."""
    abs_paths = [os.path.abspath(p) for p in paths]
    store = cache._store_dir(abs_paths, CFG, cache_dir)
    cache._rebuild(store, CFG, {}, abs_paths, {p: cache._stat(p) for p in abs_paths}, progress=False)


def lose_the_race_after(
    monkeypatch: pytest.MonkeyPatch, step: str, films: list[str], cache_dir: Path
) -> list[bool]:
    """Make another process rebuild the whole store just after ``cache.<step>`` first returns.

    Returns a list that holds ``True`` once the race has happened.
    """
    real = getattr(cache, step)
    raced: list[bool] = []

    def then_lose_the_race(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not raced:
            raced.append(True)
            rebuild_from_scratch(films, cache_dir)
        return result

    monkeypatch.setattr(cache, step, then_lose_the_race)
    return raced


def test_store_replaced_by_another_process_after_our_build(
    films: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the other process finishes just after us and deletes our pixel file
    raced = lose_the_race_after(monkeypatch, "_rebuild", films, tmp_path / "cache")
    result = load_cached(films, CFG, tmp_path / "cache", progress=False)
    assert raced and result.paths == films
    assert_aligned(result)


def test_store_replaced_by_another_process_after_we_read_its_index(
    films: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_cached(films[:4], CFG, tmp_path / "cache", progress=False)
    # the store this index points at is replaced before we open its pixels
    raced = lose_the_race_after(monkeypatch, "_read_index", films, tmp_path / "cache")
    result = load_cached(films, CFG, tmp_path / "cache", progress=False)
    assert raced and result.paths == films
    assert_aligned(result)


def test_cache_on_a_full_disk_is_a_one_line_error(tmp_path: Path, small_disk: Path) -> None:
    """Before the space was reserved, writing into the memory-mapped file killed the process (SIGBUS)."""
    folder = tmp_path / "many"
    folder.mkdir()
    paths = [str(write_film(folder / f"f{i}.png", i, size=16)) for i in range(80)]  # 80 x 64 KiB > 192 KiB
    code = (
        "import sys; from pneumoscan.config import PreprocessConfig\n"
        "from pneumoscan.data.cache import load_cached; from pneumoscan.errors import PneumoscanError\n"
        "cfg = PreprocessConfig(image_size=256, channels=1)\n"
        "try:\n"
        f"    load_cached({paths!r}, cfg, {str(small_disk)!r}, False)\n"
        "except PneumoscanError as exc:\n"
        "    print(exc); sys.exit(2)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])  # -7 was SIGBUS
    [line] = done.stdout.splitlines()
    assert "no space left for the image cache" in line and "PNEUMOSCAN_CACHE" in line
    assert not list(small_disk.rglob("pixels-*.npy"))  # no partial file left behind
