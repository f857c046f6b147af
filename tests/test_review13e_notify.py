"""Review 13e: a notification that went nowhere must not be recorded as delivered."""

import pytest

from iris_assets.core.notify import post_json


@pytest.mark.xfail(
    strict=True,
    reason="review13e: post_json opens any URL urllib knows: IRIS_NOTIFY_URL=file:///... or "
    "data:... (a typo, a copied path) 'delivers' with detail 'HTTP None' though nothing was "
    "posted; the outbox and `iris status` then say the person was told",
)
@pytest.mark.parametrize("kind", ["file", "data"])
def test_a_url_that_is_not_http_is_not_a_delivery(tmp_path, kind):
    target = tmp_path / "hook.txt"
    target.write_text("not a webhook")
    url = target.as_uri() if kind == "file" else "data:text/plain,not-a-webhook"
    delivery = post_json(url, {"event": "test", "text": "hello"})
    assert delivery.status == "failed", delivery
