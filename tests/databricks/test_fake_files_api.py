"""The fake workspace's Files API refuses what the real one refuses: a path with ``..`` segments
is a 400 INVALID_PARAMETER_VALUE, so a test can never reach a file outside the volume it names."""

from __future__ import annotations

import io

import pytest
from databricks.sdk.errors import BadRequest, InvalidParameterValue

from tests.databricks.fake_workspace import FakeWorkspace

VOLUME = "/Volumes/iris_dev/ml/landing"
OTHER = "/Volumes/iris_dev/ml/secret"


@pytest.fixture
def fake(tmp_path):
    return FakeWorkspace(
        root=tmp_path / "databricks",
        host="https://fake.cloud.databricks.com",
        token="dapi-fake",
        user="ana@example.com",
        volumes=[VOLUME, OTHER],
        denied=[OTHER],
    )


ESCAPES = [
    f"{VOLUME}/../secret/keys.parquet",  # into a volume these credentials may not read
    f"{VOLUME}/flower_labels/../../secret/keys.parquet",
    f"{VOLUME}/../../../../../etc/passwd",  # out of every volume
    f"{VOLUME}/..",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_a_path_with_dot_dot_segments_is_a_bad_request_for_every_call(fake, path):
    (fake.local_volumes / OTHER.removeprefix("/Volumes/") / "keys.parquet").write_bytes(b"k")
    files = fake.client().files
    calls = [
        lambda: files.download(path),
        lambda: files.get_metadata(path),
        lambda: files.upload(path, io.BytesIO(b"x"), overwrite=True),
        lambda: files.delete(path),
        lambda: list(files.list_directory_contents(path)),
        lambda: files.create_directory(path),
    ]
    for call in calls:
        with pytest.raises(InvalidParameterValue) as refused:
            call()
        assert isinstance(refused.value, BadRequest)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert (fake.local_volumes / OTHER.removeprefix("/Volumes/") / "keys.parquet").read_bytes() == (
        b"k"
    ), "nothing outside the named volume was touched"


def test_a_name_that_only_contains_dots_is_still_a_file(fake):
    files = fake.client().files
    files.upload(f"{VOLUME}/..hidden..parquet", io.BytesIO(b"x"), overwrite=True)
    assert files.download(f"{VOLUME}/..hidden..parquet").contents.read() == b"x"
