"""Rate limits of the public pages: a friendly 429 past the limit; never a locked-out refusal
when the counter store is down."""

from __future__ import annotations

from django.test import RequestFactory

from consent.models import ConsentEvent
from consent.tokens import make_recipient_token
from mlm.ratelimit import client_ip
from tests.public.helpers import Browser


def test_pages_answer_429_past_the_limit(mailing, settings):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "page_ip": "3/m"}
    page = f"/u/{make_recipient_token(recipient=mailing.erin)}/"
    responses = [Browser().get(page) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    limited = responses[-1]
    assert int(limited["Retry-After"]) >= 1
    assert "Too many requests" in limited.content.decode()
    chinese = Browser().get(page, HTTP_ACCEPT_LANGUAGE="zh-TW")
    assert chinese.status_code == 429 and "請求過多" in chinese.content.decode()


def test_posts_count_separately_and_are_limited_too(mailing, settings):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "action_ip": "1/m"}
    page = f"/p/{make_recipient_token(recipient=mailing.erin)}/"
    first = Browser().submit(page, {"dm": []})
    second = Browser().submit(page, {"dm": []})
    assert (first.status_code, second.status_code) == (200, 429)


def test_the_subscription_form_and_bad_links_are_limited(mailing, settings):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "page_ip": "2/m"}
    codes = [Browser().get(url).status_code for url in ("/s/engineering/", "/u/bad/", "/p/bad/")]
    assert codes == [200, 404, 429]


def test_limits_are_per_client_address(mailing, settings):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "page_ip": "1/m"}
    page = f"/u/{make_recipient_token(recipient=mailing.erin)}/"
    assert Browser().get(page, REMOTE_ADDR="192.0.2.1").status_code == 200
    assert Browser().get(page, REMOTE_ADDR="192.0.2.1").status_code == 429
    assert Browser().get(page, REMOTE_ADDR="192.0.2.2").status_code == 200


def test_an_unreachable_counter_store_never_blocks_an_unsubscribe(mailing, settings):
    """I6: with Redis down (a real closed port), the one-click still withdraws."""
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 0.2},
        },
    }
    settings.MLM_RATE_LIMIT_CACHE = "down"
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    response = Browser().post(f"/u/{token}/one-click", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()


def test_the_client_address_behind_a_trusted_proxy(settings):
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7"
    )
    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(request) == "10.0.0.5"
    settings.TRUST_X_FORWARDED_FOR = True
    assert client_ip(request) == "198.51.100.7"  # the entry our proxy appended, not the client's
