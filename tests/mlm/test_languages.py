"""Texts in three languages: one helper picks the reader's version, English where none."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from mlm.languages import language_of, text_in
from mlm.models import SenderUnit

UNIT = SenderUnit(
    name="Faculty of Engineering",
    name_zh_hant="工程學院",
    name_zh_hans="",
    postal_address="1 University Road, Hong Kong",
    postal_address_zh_hans="   ",
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("zh-Hant", "zh-hant"),
        ("zh_Hant", "zh-hant"),
        ("zh-HK", "zh-hant"),
        ("zh-CN", "zh-hans"),
        ("en-GB", "en"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_it_maps_a_locale_to_a_language_we_write(value, expected):
    assert language_of(value) == expected


def test_it_picks_the_language_asked_for():
    assert text_in(UNIT, "name", "zh-hant") == "工程學院"
    assert text_in(UNIT, "name", "en") == "Faculty of Engineering"


def test_missing_or_blank_chinese_falls_back_to_english():
    assert text_in(UNIT, "name", "zh-hans") == "Faculty of Engineering"
    assert text_in(UNIT, "postal_address", "zh-hans") == "1 University Road, Hong Kong"
    assert text_in(UNIT, "postal_address", "zh-hant") == "1 University Road, Hong Kong"
    assert text_in(UNIT, "name", "fr") == "Faculty of Engineering"


def test_it_defaults_to_the_active_language():
    with translation.override("zh-hant"):
        assert UNIT.local_name == "工程學院"
    with translation.override("zh-hans"):
        assert UNIT.local_name == "Faculty of Engineering"
    with translation.override("en"):
        assert UNIT.local_name == "Faculty of Engineering"


def test_operations_enter_the_unit_s_chinese_names_in_admin(world, admin_client):
    form = admin_client.get(reverse("admin:mlm_senderunit_change", args=[world.unit.pk]))
    assert b'name="postal_address_zh_hant"' in form.content
    response = admin_client.post(
        reverse("admin:mlm_senderunit_add"),
        {
            "name": "School of Design",
            "name_zh_hant": "設計學院",
            "name_zh_hans": "设计学院",
            "slug": "design",
            "postal_address": "School of Design, Hong Kong",
            "postal_address_zh_hant": "香港設計學院",
            "postal_address_zh_hans": "",
            "timezone": "Asia/Hong_Kong",
            "default_locale": "en",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    unit = SenderUnit.objects.get(slug="design")
    assert text_in(unit, "name", "zh-hans") == "设计学院"
    assert text_in(unit, "postal_address", "zh-hant") == "香港設計學院"
    assert text_in(unit, "postal_address", "zh-hans") == "School of Design, Hong Kong"
