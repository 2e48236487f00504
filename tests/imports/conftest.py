"""Uploaded files and reports of the import tests go to a temporary folder."""

import pytest


@pytest.fixture(autouse=True)
def media_folder(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
