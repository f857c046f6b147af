"""Review 13e: a notification that went nowhere must not be recorded as delivered."""

import pytest

from iris_assets.core.notify import post_json


@pytest.mark.parametrize("kind", ["file", "data", "ftp", "bare"])
def test_a_url_that_is_not_http_is_not_a_delivery(tmp_path, kind):
    target = tmp_path / "hook.txt"
    target.write_text("not a webhook")
    url = {
        "file": target.as_uri(),
        "data": "data:text/plain,not-a-webhook",
        "ftp": "ftp://127.0.0.1:9/hook",
        "bare": "hooks.example.com/T0/secret-token",
    }[kind]
    delivery = post_json(url, {"event": "test", "text": "hello"})
    assert delivery.status == "failed", delivery
    assert "must be an http:// or https:// URL" in delivery.detail
    assert "secret-token" not in delivery.detail and "hook" not in delivery.detail
