"""Talk to a DICOMweb archive (a PACS such as Orthanc, dcm4chee, Google Healthcare) with dicomweb-client.

QIDO-RS finds studies and their instances, WADO-RS retrieves films (in their stored transfer syntax)
and STOW-RS stores results back. Every failure of the connection, the URL or the credentials becomes
a :class:`~pneumoscan.errors.PneumoscanError` with one line that names the archive and says what to do.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import urlparse

from pydicom.dataset import Dataset

from pneumoscan.errors import PneumoscanError

TIMEOUT_SECONDS = 30.0


class ArchiveError(PneumoscanError):
    """The archive cannot be reached, refuses the credentials, or answers a request with an error."""


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

    def find_studies(self, since: datetime, modalities: Sequence[str]) -> list[str]:
        """UIDs of the studies with one of ``modalities`` whose study date/time is at or after ``since``."""
        studies: dict[str, Dataset] = {}
        for modality in modalities:
            filters = {"StudyDate": f"{since:%Y%m%d}-", "ModalitiesInStudy": modality}
            with self._errors("search for studies"):
                found = self.client.search_for_studies(search_filters=filters)
            for study in map(Dataset.from_json, found):
                studies.setdefault(str(study.StudyInstanceUID), study)
        return sorted(uid for uid, study in studies.items() if _study_start(study) >= since)

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


def _study_start(study: Dataset) -> datetime:
    """The study date and time (midnight when the time is missing; the distant past when both are)."""
    date = str(study.get("StudyDate") or "")
    time = str(study.get("StudyTime") or "").split(".")[0].ljust(6, "0")
    try:
        return datetime.strptime(date + time[:6], "%Y%m%d%H%M%S")
    except ValueError:
        return datetime.min
