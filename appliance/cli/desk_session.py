"""What the enrollment commands share: the desk opened on the data folder for the account
acting, photos read within the image limits, and the exit status of each outcome."""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.capture.images import MAX_FILE_BYTES
from appliance.cli.auth import acting_principal
from appliance.cli.common import config_from, pipeline_from, protected_data
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.enrollment_desk import DUPLICATE, ENROLLED, FAILED_TO_ENROL, EnrollmentDesk
from appliance.matcher.sync_store import open_sync_store
from appliance.security.roles import Principal
from appliance.stores.protected import key_provider

EXIT_STATUS = {ENROLLED: 0, FAILED_TO_ENROL: ErrorCode.ENROLL_FAILED.exit_status,
               DUPLICATE: ErrorCode.DUPLICATE_ENROLLMENT.exit_status}


@contextmanager
def open_desk(args: argparse.Namespace) -> Iterator[tuple[EnrollmentDesk, Principal]]:
    """The desk on the data folder's stores, and the account acting (checked before any model loads)."""
    config = config_from(args)
    with protected_data(config) as data:
        principal = acting_principal(args, data)
        sync = open_sync_store(data, key_provider(config.security, data.root))
        pipeline = pipeline_from(args, config)
        try:
            yield EnrollmentDesk(data, sync, pipeline, config), principal
        finally:
            pipeline.close()
            sync.close()


def read_upload(path: Path, label: str | None = None) -> tuple[str, bytes]:
    """A photo's bytes, refused unread when no image within the limits is that big."""
    label = label or str(path)
    if not path.is_file():
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, str(path))
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: {size} bytes is too large for an image")
    return label, path.read_bytes()
