"""The run folder of ``pneumoscan train``: one run at a time, what may be resumed, and its checkpoints.

A run holds ``RUN/.lock`` locked (``flock``) while it trains, so a second ``train`` with the same
``--out`` stops at once with a one-line error instead of interleaving its logs and files with the
first.  The kernel releases the lock when the process ends, however it ends, so a lock left by a
killed run is never stale; the file itself stays and means nothing while unlocked.  Only the
launching process of a run takes it: the other ranks of a distributed run share the folder.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from pneumoscan.atomic import atomic_path, output_folder
from pneumoscan.config import Config
from pneumoscan.errors import RunFolderError

LOCK_FILE = ".lock"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected from each other there
    fcntl = None  # type: ignore[assignment]


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps the checkpoint of its latest finished epoch."""
    return run_dir / "checkpoints" / "last.ckpt"


@contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock (creating the folder) for the duration; refuse if another run holds it.

    A folder this call created and that holds nothing but the lock afterwards is removed again.
    """
    if fcntl is None or not _is_launching_process():
        yield
        return
    created = not run_dir.exists()
    output_folder(run_dir)
    lock = run_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunFolderError(
                f"{run_dir}: another training run ({holder}) is using this folder; "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            lock.unlink()
            run_dir.rmdir()


def _is_launching_process() -> bool:
    """Whether this is the process a user started (rank 0), not a rank a distributed launcher started."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


def check_run_dir(run_dir: Path, config: Config | None, resume: bool) -> tuple[Config, Path | None]:
    """The run's config and the checkpoint to resume from (``None`` for a new run); writes nothing.

    Refuses a new run in a folder that holds one, and a resume with nothing to resume.
    """
    if not resume:
        if (run_dir / MODEL_FILE).exists() or (run_dir / "checkpoints").exists():
            raise RunFolderError(
                f"{run_dir}: already holds a run; use --resume to continue it or choose a new --out"
            )
        return config or Config(), None
    saved = run_dir / CONFIG_FILE
    if not saved.exists():
        raise RunFolderError(f"{run_dir}: nothing to resume (no config.json); start a run without --resume")
    checkpoint = last_checkpoint(run_dir)
    if not checkpoint.exists():
        raise RunFolderError(
            f"{run_dir}: nothing to resume (no checkpoints/last.ckpt: the run stopped before its first "
            "epoch ended); start it again without --resume"
        )
    return Config.load(saved), checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing through :func:`pneumoscan.atomic.atomic_path`.

    Lightning's own writes each checkpoint under the temporary folder and moves it into place, which
    crosses file systems (a copy: not atomic) and names no file when the disk is full; here a
    checkpoint is written beside its destination and renamed, and a failed write is one line naming it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        import torch

        buffer = io.BytesIO()  # torch.save to a file reports a full disk as a zip RuntimeError
        torch.save(checkpoint, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint, loaded without unpickling code (``weights_only``); one-line errors."""
    import torch

    try:
        if path.stat().st_size == 0:
            raise RunFolderError(f"{path}: the checkpoint is empty; delete it and start the run again")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except RunFolderError:
        raise
    except Exception as exc:  # truncated zip archives, foreign pickles, I/O errors: all mean unusable
        reason = " ".join(str(exc).split()).split(". ")[0][:160] or type(exc).__name__  # first sentence
        raise RunFolderError(
            f"{path}: the checkpoint is damaged or truncated ({reason}); delete it and start the run again"
        ) from exc
    if not isinstance(checkpoint, dict) or "epoch" not in checkpoint or "state_dict" not in checkpoint:
        raise RunFolderError(f"{path}: not a pneumoscan training checkpoint; delete it and start again")
    return checkpoint
