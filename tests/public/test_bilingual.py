"""Names and notices in the reader's language: DM types, their notices and the unit in
Traditional or Simplified Chinese where the unit wrote them, English where it did not."""

from __future__ import annotations

from email.utils import parseaddr

import pytest
from django.core import mail

from consent.models import SubscriptionRequest
from consent.services import dm_type_update
from consent.tasks import send_subscription_confirmation
from consent.tokens import make_recipient_token
from mlm.models import SenderUnit
from tests.public.helpers import Browser
from tests.public.test_subscribe import subscribe


@pytest.fixture
def bilingual(mailing):
    """The newsletter and the unit have Traditional Chinese texts; events has only English."""
    newsletter = mailing.newsletter
    dm_type_update(
        dm_type=newsletter,
        name=newsletter.name,
        name_zh_hant="學院通訊",
        notice_text=newsletter.current_notice.text,
        notice_text_zh_hant="學院每月通訊及活動消息。",
        internal_default=False,
        by=None,
    )
    SenderUnit.objects.filter(pk=mailing.world.unit.pk).update(
        name_zh_hant="工程學院", postal_address_zh_hant="香港大學道1號"
    )
    return mailing


def page(recipient, lang: str = "") -> str:
    url = f"/p/{make_recipient_token(recipient=recipient)}/" + (f"?lang={lang}" if lang else "")
    return Browser().get(url).content.decode()


def test_the_zh_hant_preference_centre_shows_the_zh_hant_name_and_notice(bilingual):
    type(bilingual.erin).objects.filter(pk=bilingual.erin.pk).update(locale="zh-Hant")
    html = page(bilingual.erin)
    assert '<html lang="zh-hant">' in html
    assert "學院通訊" in html and "學院每月通訊及活動消息。" in html
    assert "Newsletter" not in html and "monthly newsletter" not in html
    assert "工程學院" in html and "香港大學道1號" in html
    assert "1 University Road" not in html


def test_missing_chinese_falls_back_to_english(bilingual):
    traditional = page(bilingual.erin, "zh-hant")
    # Events has no Chinese name or notice: the English ones, not an empty box.
    assert "Event invitations" in traditional
    assert "Invitations to public lectures, open days and alumni evenings." in traditional
    simplified = page(bilingual.erin, "zh-hans")  # nothing was written in Simplified Chinese
    assert "Newsletter" in simplified and "monthly newsletter" in simplified
    assert "Faculty of Engineering" in simplified and "1 University Road" in simplified
    assert "學院通訊" not in simplified and "工程學院" not in simplified
    english = page(bilingual.erin, "en")
    assert "Newsletter" in english and "學院通訊" not in english


def test_the_unsubscribe_page_names_the_dm_type_in_the_reader_s_language(bilingual):
    token = make_recipient_token(recipient=bilingual.erin, dm_type=bilingual.newsletter.code)
    html = Browser().get(f"/u/{token}/?lang=zh-hant").content.decode()
    assert "學院通訊" in html and "工程學院" in html
    assert "Newsletter" not in html


def test_the_confirmation_mail_names_the_unit_and_dm_types_in_chinese(
    bilingual, django_capture_on_commit_callbacks
):
    browser = Browser(HTTP_ACCEPT_LANGUAGE="zh-HK,zh;q=0.9")
    subscribe(django_capture_on_commit_callbacks, bilingual, browser=browser)
    send_subscription_confirmation.run(SubscriptionRequest.objects.get().pk)
    message = mail.outbox[0]
    assert message.subject == "請確認訂閱工程學院的郵件"
    assert parseaddr(message.from_email)[0] == "工程學院"
    assert "學院通訊" in message.body and "香港大學道1號" in message.body
    assert "學院通訊" in message.alternatives[0][0]


def test_the_subscribe_evidence_is_the_wording_the_page_showed(
    bilingual, django_capture_on_commit_callbacks
):
    """I2: the grant's evidence is what the person read, in the language they read it in."""
    browser = Browser(HTTP_ACCEPT_LANGUAGE="zh-HK,zh;q=0.9")
    shown = browser.get("/s/engineering/").content.decode()
    assert "學院通訊" in shown and "學院每月通訊及活動消息。" in shown
    assert "Event invitations" in shown  # no Chinese name: the English one
    subscribe(django_capture_on_commit_callbacks, bilingual, browser=browser)
    wording = SubscriptionRequest.objects.get().wording
    assert wording.startswith("[zh-hant] ")
    assert "工程學院" in wording
    assert "[x] 學院通訊 (notice v2): 學院每月通訊及活動消息。" in wording
