"""Review 13d: the fake Files API answers a path starting with ``//`` as the service does, a 400
BAD_REQUEST "Invalid path" (databricks/databricks-sdk-go#713 quotes the service's answer to
``PUT /api/2.0/fs/files//Volumes/main/x/y/z``), not a 404 that code handling a missing file would
take for "not there yet". ``//`` or ``.`` segments further in are left as they were: no source
found says what the service does with them."""

from __future__ import annotations

import io

import pytest
from databricks.sdk.errors import BadRequest, NotFound

from tests.databricks.test_fake_files_api import VOLUME, fake  # noqa: F401


def test_a_path_starting_with_two_slashes_is_a_bad_request_for_every_call(fake):  # noqa: F811
    files = fake.client().files
    files.upload(f"{VOLUME}/x.parquet", io.BytesIO(b"x"), overwrite=True)
    path = f"/{VOLUME}/x.parquet"
    calls = [
        lambda: files.download(path),
        lambda: files.get_metadata(path),
        lambda: files.upload(path, io.BytesIO(b"y"), overwrite=True),
        lambda: files.delete(path),
        lambda: list(files.list_directory_contents(f"/{VOLUME}")),
        lambda: files.create_directory(f"/{VOLUME}/d"),
    ]
    for call in calls:
        with pytest.raises(BadRequest) as refused:
            call()
        assert not isinstance(refused.value, NotFound)
        assert refused.value.error_code == "BAD_REQUEST"
        assert "Invalid path" in str(refused.value)
    assert files.download(f"{VOLUME}/x.parquet").contents.read() == b"x", "nothing was written"
