"""Talk to a DICOMweb archive (a PACS such as Orthanc, dcm4chee, Google Healthcare) with dicomweb-client.

QIDO-RS finds studies and their instances, WADO-RS retrieves films (in their stored transfer syntax)
and STOW-RS stores results back. Every failure of the connection, the URL or the credentials becomes
a :class:`~pneumoscan.errors.PneumoscanError` with one line that names the archive and says what to do.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from urllib.parse import urlparse

from pydicom.dataset import Dataset

from pneumoscan.errors import PneumoscanError

TIMEOUT_SECONDS = 30.0
PAGE = 1000  # studies asked for per search; a full answer is searched again in smaller date ranges


class ArchiveError(PneumoscanError):
    """The archive cannot be reached, refuses the credentials, or answers a request with an error."""


@dataclass
class StudySearch:
    """What a search by date found: Study Instance UIDs; one line for each date range whose answer
    stayed capped (``capped``), and notes on what else a capped archive may hide (``notes``)."""

    uids: list[str]
    capped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Archive:
    """A DICOMweb service at ``url`` (e.g. ``http://localhost:8042/dicom-web``), optionally with a login."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ArchiveError(f"{url}: not a DICOMweb URL; give one like http://localhost:8042/dicom-web")
        self.url = url.rstrip("/")
        if user is not None:
            session = create_session_from_user_pass(user, password or "")
        else:
            session = create_session()
        self.client = DICOMwebClient(self.url, session=session, timeout=TIMEOUT_SECONDS)
        self.client.set_http_retry_params(max_attempts=2)

    def check(self) -> None:
        """Raise :class:`ArchiveError` unless the archive answers a search (URL, login, connection)."""
        with self._errors("search for studies"):
            self.client.search_for_studies(limit=1)

    def find_studies(self, since: datetime, modalities: Sequence[str]) -> StudySearch:
        """The studies with one of ``modalities`` whose study date/time is at or after ``since``.

        A study without StudyTime on the ``since`` day, and one without StudyDate, counts as inside.
        Archives cap search answers (Orthanc's ``LimitFindResults``) and some ignore offsets, so a full
        answer is searched again in two halves of its date range, down to single days; a study date whose
        answer is still full is named in ``capped``; undated studies a full answer may hide in ``notes``.
        """
        search = _Search(self)
        studies: dict[str, Dataset] = {}
        for modality in modalities:
            studies.update(search.dated(modality, since.date()))
            studies.update(search.undated(modality))
        uids = sorted(uid for uid, study in studies.items() if _is_since(study, since))
        return StudySearch(uids, search.capped(), search.notes())

    def search(self, filters: dict[str, str], limit: int) -> dict[str, Dataset]:
        """One QIDO-RS study search (at most ``limit`` answers), by Study Instance UID."""
        with self._errors("search for studies"):
            found = self.client.search_for_studies(search_filters=filters, limit=limit)
        studies = (Dataset.from_json(item) for item in found)
        return {str(study.StudyInstanceUID): study for study in studies}

    def instances(self, study_uid: str) -> list[Dataset]:
        """QIDO-RS headers (UIDs, modality, series description) of the instances of one study."""
        fields = [
            "Modality",
            "SOPClassUID",
            "SeriesDescription",
            "BodyPartExamined",
            "ViewPosition",
            "ViewCodeSequence",
            "InstanceNumber",
        ]
        with self._errors(f"list study {study_uid}"):
            found = self.client.search_for_instances(study_uid, fields=fields)
        if not found:
            raise ArchiveError(f"{self.url}: study {study_uid} not found; check the Study Instance UID")
        return [Dataset.from_json(item) for item in found]

    def retrieve(self, instance: Dataset) -> bytes:
        """The DICOM file of one instance, in the transfer syntax the archive stores it in."""
        with self._errors(f"retrieve instance {instance.SOPInstanceUID}"):
            dataset = self.client.retrieve_instance(
                str(instance.StudyInstanceUID),
                str(instance.SeriesInstanceUID),
                str(instance.SOPInstanceUID),
                media_types=(("application/dicom", "*"),),
            )
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    def store(self, study_uid: str, datasets: Sequence[Dataset]) -> None:
        """Store ``datasets`` into the study (STOW-RS); raise if the archive refuses any of them."""
        with self._errors(f"store results into study {study_uid}"):
            response = self.client.store_instances(list(datasets), study_instance_uid=study_uid)
        failed = response.get("FailedSOPSequence") or []
        if failed:
            reasons = ", ".join(str(item.get("FailureReason", "?")) for item in failed)
            raise ArchiveError(f"{self.url}: the archive refused {len(failed)} result(s) (reason {reasons})")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn the HTTP client's exceptions into one-line :class:`ArchiveError` messages."""
        import requests

        try:
            yield
        except requests.exceptions.HTTPError as exc:
            raise ArchiveError(_http_message(self.url, action, exc.response)) from None
        except requests.exceptions.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "no connection"
            raise ArchiveError(
                f"{self.url}: cannot {action} ({reason}); check --url and that the archive is running"
            ) from None
        except requests.exceptions.Timeout:
            raise ArchiveError(
                f"{self.url}: cannot {action} (no answer within {TIMEOUT_SECONDS:.0f} s); check --url"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ArchiveError(f"{self.url}: cannot {action} ({type(exc).__name__}); check --url") from None
        except ValueError as exc:  # dicomweb-client's checks of the answer (media type, UIDs)
            raise ArchiveError(f"{self.url}: cannot {action} ({exc}); is this a DICOMweb URL?") from None


_HTTP_ADVICE: dict[int, str] = {
    401: "the archive wants a login; give --user and --password (or PNEUMOSCAN_PACS_PASSWORD)",
    403: "the login may not do this; ask the archive's administrator",
    404: "check --url: it must be the DICOMweb root, e.g. http://localhost:8042/dicom-web",
}


def _http_message(url: str, action: str, response: object) -> str:
    status = int(getattr(response, "status_code", 0) or 0)
    advice = _HTTP_ADVICE.get(status, "see the archive's log")
    return f"{url}: cannot {action} (HTTP {status}); {advice}"


class _Search:
    """Study searches of one archive that learn its answer cap.

    An answer with ``full`` studies or more may be capped. ``full`` starts at the limit asked for and
    drops to the size of an answer shown to be capped, because halves of its range found more.
    """

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.full = PAGE
        self.learned = False  # whether ``full`` is the archive's cap, so that smaller answers are complete
        self.capped_days: set[date] = set()
        self.capped_after: date | None = None
        self.undated_capped = False

    def dated(self, modality: str, first: date) -> dict[str, Dataset]:
        """The studies of ``modality`` dated ``first`` or later."""
        return self._gather(modality, first, None, self._query(modality, first, None))

    def undated(self, modality: str) -> dict[str, Dataset]:
        """The studies of ``modality`` without StudyDate that an undated search lists."""
        found = self.archive.search({"ModalitiesInStudy": modality}, PAGE)
        self.undated_capped |= len(found) >= self.full
        return {uid: study for uid, study in found.items() if not study.get("StudyDate")}

    def capped(self) -> list[str]:
        """One line for each date (or the dates after one) whose answer stayed full."""
        advice = "more may exist: raise its limit or give those studies with --study"
        lines = [
            f"the archive capped results for {day:%Y-%m-%d}; {advice}" for day in sorted(self.capped_days)
        ]
        if self.capped_after is not None:
            lines.append(f"the archive capped results after {self.capped_after:%Y-%m-%d}; {advice}")
        return lines

    def notes(self) -> list[str]:
        """A line when studies without StudyDate may be hidden by a capped answer."""
        if not self.undated_capped:
            return []
        return ["studies without a StudyDate cannot be found by date in this archive; give them with --study"]

    def _query(self, modality: str, first: date, last: date | None) -> dict[str, Dataset]:
        days = f"{first:%Y%m%d}-{last:%Y%m%d}" if last is not None else f"{first:%Y%m%d}-"
        return self.archive.search({"StudyDate": days, "ModalitiesInStudy": modality}, PAGE)

    def _gather(
        self, modality: str, first: date, last: date | None, found: dict[str, Dataset]
    ) -> dict[str, Dataset]:
        """All studies dated ``first`` to ``last`` (None: no end), given one answer ``found`` for them."""
        halves = _halves(first, last)
        if len(found) <= 1 or halves is None or (self.learned and len(found) < self.full):
            if len(found) >= self.full and last is not None:
                self.capped_days.add(first)
            elif len(found) >= self.full:
                self.capped_after = first
            return found
        (lo_first, lo_last), (hi_first, hi_last) = halves
        low, high = self._query(modality, lo_first, lo_last), self._query(modality, hi_first, hi_last)
        if len(low) + len(high) > len(found):  # the archive capped `found`: so it caps every answer
            self.full, self.learned = min(self.full, len(found)), True
        elif len(found) < self.full and max(len(low), len(high)) < len(found):
            return found  # both halves smaller and together no more: `found` was all of them
        return {
            **self._gather(modality, lo_first, lo_last, low),
            **self._gather(modality, hi_first, hi_last, high),
        }


def _halves(first: date, last: date | None) -> tuple[tuple[date, date], tuple[date, date | None]] | None:
    """``first``..``last`` split in two date ranges; None for a single day (or the future, when open)."""
    if last is None:
        today = date.today()
        return ((first, today), (today + timedelta(days=1), None)) if first <= today else None
    if first >= last:
        return None
    middle = first + (last - first) // 2
    return (first, middle), (middle + timedelta(days=1), last)


def _is_since(study: Dataset, since: datetime) -> bool:
    """Whether the study is at or after ``since``: a later date, or the same date and no earlier time.

    A study without StudyDate, or without StudyTime on the ``since`` day, counts as inside.
    """
    try:
        day = datetime.strptime(str(study.get("StudyDate") or ""), "%Y%m%d").date()
    except ValueError:
        return True
    if day != since.date():
        return day > since.date()
    time = str(study.get("StudyTime") or "").split(".")[0]
    if not time:
        return True
    try:
        return datetime.combine(day, datetime.strptime(time.ljust(6, "0")[:6], "%H%M%S").time()) >= since
    except ValueError:
        return True
