"""``pneumoscan inspect``: what data sources hold, and what is wrong with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pneumoscan.atomic import output_folder
from pneumoscan.classes import FILM_CLASSES, OTHER, OUTPUT_CLASSES, POSITIVE, ambiguous_of, present_classes
from pneumoscan.config import Config
from pneumoscan.data.cache import load_cached
from pneumoscan.data.manifest import cross_split_duplicates, scan_sources, training_pool
from pneumoscan.errors import DataError

SHOWN_PATIENTS = 5  # patient ids in more than one split named in the report


@dataclass
class InspectReport:
    """The manifest with the training split applied, unreadable files and cross-split duplicates.

    ``unusable``: why training would refuse the data (e.g. only test splits, one class), else "";
    the manifest then shows the splits as they are on disk.
    """

    manifest: pd.DataFrame
    unreadable: dict[str, str]
    duplicates: pd.DataFrame
    resplit: bool
    unusable: str = ""

    def counts(self) -> pd.DataFrame:
        """Images per site, split and film class (NORMAL, PNEUMONIA, and OTHER when there are any,
        with ``ambiguous``: the ambiguous OTHER films among them), totals and the pneumonia share."""
        frame = self.manifest
        names = (*OUTPUT_CLASSES, *present_classes(frame["class_name"]))
        table = frame.groupby(["site", "split", "class_name"]).size().unstack(fill_value=0)
        table = table.reindex(columns=list(dict.fromkeys(names)), fill_value=0)
        table.columns.name = None
        total = table.sum(axis=1)
        ambiguous = ambiguous_of(frame)
        if ambiguous.any():
            table["ambiguous"] = (
                frame[ambiguous].groupby(["site", "split"]).size().reindex(table.index, fill_value=0)
            )
        table["total"] = total
        table["pneumonia %"] = (100 * table[POSITIVE] / total).round(1)
        return table

    def balance(self) -> str:
        """One line: PNEUMONIA films per film without pneumonia, and the films of each class."""
        frame = self.manifest
        names = frame["class_name"]
        counts = ", ".join(f"{int((names == n).sum())} {n}" for n in present_classes(names))
        ambiguous = int(ambiguous_of(frame).sum())
        counts += f" ({ambiguous} {OTHER} ambiguous)" if ambiguous else ""
        positives, negatives = int((frame["label"] == 1).sum()), int((frame["label"] == 0).sum())
        if not negatives or not positives:
            missing = " or ".join(c.name for c in FILM_CLASSES if c.target == int(not positives))
            return f"class imbalance: only one class, no {missing} images ({counts or 'no images'})"
        return f"class imbalance: {positives / negatives:.2f} {POSITIVE} per film without it ({counts})"

    def text(self) -> str:
        """Human-readable report."""
        lines = [self.counts().to_string(), "", self.balance()]
        patients = self.manifest.groupby("patient_id")["split"].nunique()
        pool = self.manifest[self.manifest["split"].isin(["train", "val"])]
        in_both = int((pool.groupby("patient_id")["split"].nunique() > 1).sum())
        lines.append(f"patients: {len(patients)}; in both train and val: {in_both}")
        lines += self._shared_patient_lines()
        if self.unusable:
            lines.append(f"training: refused: {self.unusable}")
        elif self.resplit:
            lines.append("validation: cut from train by patient and class (val/ missing or too small)")
        lines.append(f"unreadable files: {len(self.unreadable)}")
        lines += [f"  {message}" for message in self.unreadable.values()]
        groups = self.duplicates.groupby("sha1") if not self.duplicates.empty else []
        lines.append(f"identical images in two splits: {len(groups)}")
        for _, group in groups:
            lines.append("  " + "  ==  ".join(f"{r.split}:{r.path}" for r in group.itertuples()))
        return "\n".join(lines)

    def _shared_patient_lines(self, shown: int = SHOWN_PATIENTS) -> list[str]:
        """Patient ids found in more than one split: how many, the first few, and what to do."""
        splits = self.manifest.groupby("patient_id")["split"].unique()
        shared = splits[splits.map(len) > 1]
        if shared.empty:
            return ["patient ids in more than one split: 0"]
        examples = ", ".join(
            f"{pid} ({'+'.join(sorted(where))})" for pid, where in shared.head(shown).items()
        )
        more = f", and {len(shared) - shown} more" if len(shared) > shown else ""
        return [
            f"patient ids in more than one split: {len(shared)}: {examples}{more}",
            "  the same id in two splits may be one patient in both, which makes test figures optimistic: "
            "check those films (--manifest FILE lists every film with its patient id) and move each "
            "patient's films into one split. Validation cut from train is always split by patient.",
        ]

    def write_plots(self, out_dir: str | Path) -> None:
        """Class distribution and sample images as PNG."""
        from pneumoscan.evaluation import plots

        out = output_folder(out_dir)
        plots.class_distribution(self.manifest, out / "class_distribution.png")
        readable = self.manifest[~self.manifest["path"].isin(self.unreadable)]
        plots.sample_grid(readable, out / "samples.png")


def _val_paths(frame: pd.DataFrame) -> set[str]:
    return set(frame.loc[frame["split"] == "val", "path"])


def inspect_dataset(
    sources: str | Path | Sequence[str | Path], config: Config, progress: bool = True
) -> InspectReport:
    """Scan, split and decode (into the cache) every image of ``sources`` (data folders, labels CSVs)."""
    frame = scan_sources(sources)
    data = config.data
    try:
        pool = training_pool(frame, data.val_fraction, data.min_val_images, data.split_seed)
        unusable = ""
    except DataError as exc:  # still show what is there, as it is on disk
        pool, unusable = frame.iloc[:0], str(exc)
    # derived from training_pool's own choice, so the report never disagrees with training
    resplit = _val_paths(pool) != _val_paths(frame)
    tests = frame[frame["split"].str.startswith("test") & ~frame["path"].isin(pool["path"])]
    manifest = frame if unusable else pd.concat([pool, tests], ignore_index=True)
    cached = load_cached(manifest["path"].tolist(), config.preprocess, data.cache_dir, progress)
    return InspectReport(manifest, cached.failures, cross_split_duplicates(frame), resplit, unusable)
