"""``pneumoscan pacs``."""

from __future__ import annotations

import argparse
import os
import sys

from pneumoscan.cli.common import ENGINE_HELP, check_heatmaps, write_table
from pneumoscan.errors import PneumoscanError


def add(sub: argparse._SubParsersAction) -> None:
    from pneumoscan.data.imageio import CHEST_MODALITIES

    p = sub.add_parser(
        "pacs",
        help="predict studies of a PACS (DICOMweb) and store the results back",
        description="Retrieve chest films from a DICOMweb archive, predict them and store into the same "
        "study a DICOM SR with the result (and with --heatmaps a Secondary Capture of the heat map). "
        "Running it again stores nothing twice.",
    )
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. http://localhost:8042/dicom-web")
    p.add_argument("--user", help="login for the archive (HTTP basic authentication)")
    p.add_argument(
        "--password", help="password for --user (default: the PNEUMOSCAN_PACS_PASSWORD environment variable)"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", action="append", metavar="UID", help="a Study Instance UID (repeatable)")
    which.add_argument(
        "--since", metavar="TIME", help="all studies from this date/time on, e.g. 2024-05-01T08:00"
    )
    p.add_argument(
        "--modality",
        default=",".join(CHEST_MODALITIES),
        help="with --since: modalities in the study (default: %(default)s)",
    )
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--engine", choices=["torch", "onnx"], help=ENGINE_HELP)
    p.add_argument("--heatmaps", action="store_true", help="also store a Secondary Capture of the heat map")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write a CSV table ('-' for stdout)")
    out.add_argument("--json", action="store_true", help="print JSON lines")


def _since(value: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise PneumoscanError(f"--since {value}: not a date/time; give e.g. 2024-05-01T08:00") from None


def run(args: argparse.Namespace) -> int:
    from pneumoscan.pacs.archive import Archive
    from pneumoscan.pacs.run import InstanceResult, process_study
    from pneumoscan.predict import Predictor

    check_heatmaps(args.model, args)
    password = args.password if args.password is not None else os.environ.get("PNEUMOSCAN_PACS_PASSWORD")
    archive = Archive(args.url, args.user, password)
    capped: list[str] = []
    if args.since:
        modalities = [m.strip().upper() for m in args.modality.split(",") if m.strip()]
        search = archive.find_studies(_since(args.since), modalities)
        studies, capped = search.uids, search.capped
        print(f"pneumoscan: {len(studies)} studies since {args.since}", file=sys.stderr)
        for line in capped + search.notes:
            print(f"pneumoscan: {line}", file=sys.stderr)
    else:
        archive.check()  # a wrong URL or login is one error, not one per study
        studies = args.study
    predictor = Predictor.load(args.model, args.engine)
    results: list[InstanceResult] = []
    failed_studies = 0
    for study in studies:
        try:
            for result in process_study(archive, predictor, study, heatmaps=args.heatmaps):
                results.append(result)
                if not (args.csv or args.json):
                    print(_instance_line(result), flush=True)
                if result.error:
                    print(f"pneumoscan: skipped {result.error}", file=sys.stderr)
        except PneumoscanError as exc:  # the study cannot be listed: report it and go on with the next
            failed_studies += 1
            results.append(InstanceResult(study, "", "", "study failed", error=str(exc)))
            print(f"pneumoscan: study {study} failed: {exc}", file=sys.stderr)
    write_table([r.as_dict() for r in results], args)
    instances = [r for r in results if r.sop_uid]
    failed = sum(1 for r in instances if r.error)
    stored = sum(1 for r in instances if r.status.startswith("stored"))
    print(
        f"pneumoscan: {len(instances)} instances: {stored} stored, "
        f"{len(instances) - stored - failed} already stored, {failed} skipped",
        file=sys.stderr,
    )
    if failed_studies:
        print(f"pneumoscan: {failed_studies} of {len(studies)} studies failed", file=sys.stderr)
        return 2
    if capped:
        print(f"pneumoscan: the archive capped {len(capped)} search(es); see above", file=sys.stderr)
        return 2
    return 2 if instances and failed == len(instances) else 0


def _instance_line(result) -> str:
    """One stdout line per archive instance: probability, label, study/instance UIDs and what was done."""
    prediction = result.prediction
    where = f"{result.study_uid}/{result.sop_uid}"
    if prediction is None or result.error:
        status = f"skipped ({result.modality or 'no modality'})" if result.error else result.status
        return f"{'-':>8}  {'-':<9}  {where}  {status}"
    probability = f"{prediction.probability:8.4f}" if prediction.probability is not None else f"{'-':>8}"
    label = "REFUSED" if prediction.refused else prediction.label or "-"
    return f"{probability}  {label:<9}  {where}  {result.status}"
