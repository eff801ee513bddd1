"""On-disk cache of decoded, resized images, so that training epochs never decode a JPEG twice.

One store per (data folder, image size, crop fraction) under the cache directory holds a
memory-mapped ``(N, S, S)`` uint8 ``.npy`` array and a JSON index of each file's row, size and
modification time.  A file whose size or mtime changed, or a new file, is decoded again; files
that cannot be decoded are remembered with their error so they are reported, not retried, until
they change.  New stores are written under fresh names and the index is replaced atomically last,
so an interrupted build never leaves a store whose rows point at the wrong images.  Processes that
build one store at the same time (the ranks of a distributed run) each write a complete store; one
whose pixel file was replaced by another's before it could open it reads the newer index instead.
A new pixel file gets its disk space reserved (``posix_fallocate``) before it is memory-mapped: a
full disk is then a one-line error and the partial file is removed, where writing into a mapped
file the disk cannot hold would kill the process with SIGBUS.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.atomic import atomic_write_text
from pneumoscan.config import PreprocessConfig
from pneumoscan.errors import DataError, ImageReadError
from pneumoscan.preprocess import load_prepared
from pneumoscan.progress import live_bars

_VERSION = 2  # 2: large JPEGs decoded at reduced scale (read_for_model)
_ATTEMPTS = 3


@dataclass
class CachedImages:
    """Prepared images for ``paths`` (rows of ``pixels`` in the same order) and the files that failed."""

    pixels: np.ndarray  # (N, S, S) uint8, a view of the memory-mapped store
    paths: list[str]
    failures: dict[str, str]


def default_cache_dir() -> Path:
    """``$PNEUMOSCAN_CACHE``, else ``$XDG_CACHE_HOME/pneumoscan``, else ``~/.cache/pneumoscan``."""
    if os.environ.get("PNEUMOSCAN_CACHE"):
        return Path(os.environ["PNEUMOSCAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pneumoscan"


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _decode(path: str, cfg: PreprocessConfig) -> np.ndarray | str:
    try:
        return load_prepared(path, cfg)
    except ImageReadError as exc:
        return str(exc)


def load_cached(
    paths: Sequence[str], cfg: PreprocessConfig, cache_dir: str | Path | None = None, progress: bool = True
) -> CachedImages:
    """Return prepared uint8 images for ``paths``, decoding only files not cached yet or changed."""
    abs_paths = [os.path.abspath(p) for p in paths]
    store = _store_dir(abs_paths, cfg, Path(cache_dir) if cache_dir else default_cache_dir())
    for attempt in range(_ATTEMPTS):
        try:
            index, pixels = _up_to_date(store, cfg, abs_paths, progress)
            break
        except FileNotFoundError:  # another process replaced the store after we read its index
            if attempt == _ATTEMPTS - 1:
                raise
    entries: dict[str, list[int]] = index["entries"]
    failures: dict[str, list] = index["failures"]
    ok = [(orig, entries[a][0]) for orig, a in zip(paths, abs_paths, strict=True) if a in entries]
    rows = np.array([row for _, row in ok], dtype=np.int64)
    bad = {orig: failures[a][2] for orig, a in zip(paths, abs_paths, strict=True) if a in failures}
    view = pixels[rows] if len(rows) else np.zeros((0, cfg.image_size, cfg.image_size), np.uint8)
    return CachedImages(pixels=view, paths=[orig for orig, _ in ok], failures=bad)


def _up_to_date(
    store: Path, cfg: PreprocessConfig, abs_paths: list[str], progress: bool
) -> tuple[dict, np.ndarray]:
    """The store's index and memory-mapped pixels, after decoding the files it lacks or has changed."""
    index = _read_index(store, cfg)
    entries: dict[str, list[int]] = index.get("entries", {})
    failures: dict[str, list] = index.get("failures", {})
    stats = {p: _stat(p) for p in abs_paths}
    stale = [
        p
        for p in abs_paths
        if not (p in entries and entries[p][1:] == stats[p])
        and not (p in failures and failures[p][:2] == stats[p])
    ]
    if stale or not index:
        index = _rebuild(store, cfg, index, stale, stats, progress)
    return index, np.load(store / index["pixels"], mmap_mode="r")


def _store_dir(abs_paths: list[str], cfg: PreprocessConfig, cache_dir: Path) -> Path:
    root = os.path.commonpath(abs_paths) if abs_paths else "."
    text = f"{root}|{cfg.image_size}|{cfg.crop_fraction}"
    key = hashlib.sha1(text.encode("utf-8", "surrogateescape"), usedforsecurity=False)  # any folder name
    return cache_dir / f"{cfg.image_size}px-{key.hexdigest()[:16]}"


def _read_index(store: Path, cfg: PreprocessConfig) -> dict:
    try:
        index = json.loads((store / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    same = index.get("version") == _VERSION and index.get("image_size") == cfg.image_size
    same = same and index.get("crop_fraction") == cfg.crop_fraction
    # an index whose pixel file is gone would keep its entries without their images: start afresh
    return index if same and (store / str(index.get("pixels", "-"))).is_file() else {}


def _rebuild(
    store: Path, cfg: PreprocessConfig, index: dict, stale: list[str], stats: dict, progress: bool
) -> dict:
    old_pixels = np.load(store / index["pixels"], mmap_mode="r") if index else None
    keep = {p: e for p, e in index.get("entries", {}).items() if p not in stale}
    failures = {p: f for p, f in index.get("failures", {}).items() if p not in stale}
    decoded = _decode_all(stale, cfg, progress)
    new_rows = [p for p in stale if isinstance(decoded[p], np.ndarray)]
    name = f"pixels-{uuid.uuid4().hex[:8]}.npy"
    shape = (len(keep) + len(new_rows), cfg.image_size, cfg.image_size)
    try:
        store.mkdir(parents=True, exist_ok=True)
        out = _allocated_memmap(store / name, shape)
    except OSError as exc:
        with contextlib.suppress(OSError):
            (store / name).unlink()
        raise _cache_error(store, exc) from exc
    entries: dict[str, list[int]] = {}
    for row, (path, entry) in enumerate(keep.items()):
        out[row] = old_pixels[entry[0]]  # type: ignore[index]
        entries[path] = [row, *entry[1:]]
    for row, path in enumerate(new_rows, start=len(keep)):
        out[row] = decoded[path]
        entries[path] = [row, *stats[path]]
    for path in stale:
        if not isinstance(decoded[path], np.ndarray):
            failures[path] = [*(stats[path] or [-1, -1]), decoded[path]]
    out.flush()
    del out
    new_index = {
        "version": _VERSION,
        "image_size": cfg.image_size,
        "crop_fraction": cfg.crop_fraction,
        "pixels": name,
        "entries": entries,
        "failures": failures,
    }
    try:
        atomic_write_text(store / "index.json", json.dumps(new_index))
    except OSError as exc:
        with contextlib.suppress(OSError):
            (store / name).unlink()
        raise _cache_error(store, exc) from exc
    for old in store.glob("pixels-*.npy"):
        if old.name != name:
            with contextlib.suppress(OSError):  # still mapped (Windows) or gone: a later build removes it
                old.unlink()
    return new_index


def _allocated_memmap(path: Path, shape: tuple[int, int, int]) -> np.memmap:
    """A new ``.npy`` file of uint8 zeros with all its disk space reserved, memory-mapped for writing."""
    descr = np.lib.format.dtype_to_descr(np.dtype(np.uint8))
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.flush()
        offset = handle.tell()
        size = int(np.prod(shape))
        try:
            os.posix_fallocate(handle.fileno(), offset, max(size, 1))
        except (AttributeError, OSError) as exc:  # no fallocate here (macOS, some network file systems)
            if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            _write_zeros(handle, size)
    return np.lib.format.open_memmap(path, mode="r+")


def _write_zeros(handle: Any, size: int, chunk: int = 2**22) -> None:
    """Allocate ``size`` bytes by writing them, where the file system cannot reserve space otherwise."""
    zeros = bytes(min(size, chunk))
    for start in range(0, size, chunk):
        handle.write(zeros[: min(chunk, size - start)])
    handle.flush()
    os.fsync(handle.fileno())


def _cache_error(store: Path, exc: OSError) -> DataError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(
            f"{store}: no space left for the image cache; free some space, or move the cache "
            "with PNEUMOSCAN_CACHE=DIR or --set data.cache_dir=DIR"
        )
    return DataError(
        f"{store}: the image cache cannot be written ({exc.strerror or exc}); "
        "move it with PNEUMOSCAN_CACHE=DIR or --set data.cache_dir=DIR"
    )


def _decode_all(paths: list[str], cfg: PreprocessConfig, progress: bool) -> dict[str, np.ndarray | str]:
    if not paths:
        return {}
    from tqdm import tqdm  # drawn on terminals only (live_bars), so never a notebook widget

    bars = live_bars(progress, sys.stderr)
    if progress and not bars:
        print(f"decoding {len(paths)} images into the cache", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(lambda p: _decode(p, cfg), paths)
        bar = tqdm(results, total=len(paths), desc="decoding images", unit="img", disable=not bars)
        return dict(zip(paths, bar, strict=True))
