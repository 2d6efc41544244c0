"""The client refuses, before any call, the upload names DingTalk (and so the sandbox) refuses."""

from __future__ import annotations

import pytest

from dispatcher.dingtalk import media as client_media
from dispatcher.dingtalk.media import check_upload
from dispatcher.errors import DeliveryError
from dispatcher.sandbox import media as sandbox_media


@pytest.mark.parametrize("kind", ["image", "file"])
def test_the_client_and_the_sandbox_accept_the_same_formats(kind: str) -> None:
    assert client_media.FORMATS[kind] == sandbox_media.FORMATS[kind]


@pytest.mark.parametrize(
    ("name", "hint"),
    [("chart.jpeg", "name the file .jpg"), ("rows.csv", "a csv must be zipped"), ("chart.webp", None)],
)
def test_a_name_dingtalk_refuses_is_refused_before_the_upload(name: str, hint: str | None) -> None:
    kind = "file" if name.endswith(".csv") else "image"
    with pytest.raises(DeliveryError) as caught:
        check_upload(kind, name, b"x")
    assert f"{name!r}: DingTalk accepts a {kind} only as" in str(caught.value)
    assert (caught.value.hint or "").startswith(hint) if hint else caught.value.hint is None


@pytest.mark.parametrize(
    ("kind", "name"), [("image", "chart.JPG"), ("image", "chart.png"), ("file", "rows.zip")]
)
def test_the_formats_dingtalk_lists_pass(kind: str, name: str) -> None:
    check_upload(kind, name, b"x")
