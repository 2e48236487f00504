"""Two-factor authentication for staff: a TOTP authenticator app (django-otp), asked for at login
once a person has one, and required of the roles MLM_REQUIRE_2FA_FOR names.

django-otp keeps the devices and checks the codes (with its own throttling of wrong codes);
this module adds the set-up page, the code field of the login forms, and the rule of which
members must have it.
"""

from __future__ import annotations

import segno
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from mlm.login_routes import logged_in_through
from mlm.models import Membership
from mlm.services import audit_record

DEVICE_NAME = "Authenticator app"


def required_for(user) -> bool:
    """Must this person use a second factor: a member in a role MLM_REQUIRE_2FA_FOR names (or
    staff, when it names `staff`)?"""
    roles = set(settings.MLM_REQUIRE_2FA_FOR)
    if not roles or not user.is_authenticated:
        return False
    if "staff" in roles and user.is_staff:
        return True
    return Membership.objects.filter(user=user, role__in=roles).exists()


def needs_second_factor(request: HttpRequest) -> bool:
    """A logged-in person who must use a second factor and has not, in this session. A session
    that single sign-on opened is trusted to the identity provider's own second factor:
    MLM_REQUIRE_2FA_FOR governs password logins."""
    if logged_in_through(request) is not None:
        return False
    verified = getattr(request.user, "is_verified", lambda: False)()
    return not verified and required_for(request.user)


def verified_device(user, token: str) -> TOTPDevice | None:
    """The person's confirmed device that accepts `token` now, if any."""
    for device in TOTPDevice.objects.devices_for_user(user, confirmed=True):
        if device.verify_token(token):
            return device
    return None


class CodeField(forms.CharField):
    def __init__(self, **kwargs) -> None:
        super().__init__(
            required=False,
            max_length=8,
            label="Code from your authenticator app",
            help_text="Only if you have set up two-factor authentication.",
            widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
            **kwargs,
        )


class AsksForTheCode:
    """A login form mixin: after the password, a person with a device must give its code."""

    otp_device: TOTPDevice | None = None

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not user_has_device(user, confirmed=True):
            return
        token = (self.cleaned_data.get("otp_token") or "").strip()
        if not token:
            raise forms.ValidationError(
                "Enter the code from your authenticator app.", code="otp_required"
            )
        self.otp_device = verified_device(user, token)
        if self.otp_device is None:
            raise forms.ValidationError(
                "That code is not right, or has expired: enter the current one.", code="otp_wrong"
            )
        # Noted for the login that follows, which marks the session verified (below).
        self.request.mlm_otp_device = self.otp_device


@receiver(user_logged_in)
def _verified_by_the_login(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """A login that gave a right code makes its session verified (django-otp)."""
    device = getattr(request, "mlm_otp_device", None)
    if device is not None and device.user_id == user.pk:
        otp_login(request, device)


class SetUpForm(forms.Form):
    otp_token = forms.CharField(
        max_length=8,
        label="Code from your authenticator app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: scan the code, then prove it with one of its codes."""
    user = request.user
    confirmed = user_has_device(user, confirmed=True)
    if confirmed and getattr(user, "is_verified", lambda: False)():
        return render(request, "registration/two_factor.html", {"confirmed": True})
    device = None
    if not confirmed:
        device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    form = SetUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["otp_token"].strip()
        found = verified_device(user, token) if confirmed else None
        if device is not None and device.verify_token(token):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            found = device
            audit_record(unit=None, actor=user, verb="two_factor.set_up", data={})
        if found is not None:
            otp_login(request, found)
            target = request.GET.get("next", "")
            if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
                target = "home"
            return redirect(target)
        form.add_error("otp_token", "That code is not right, or has expired: try the current one.")
    context = {
        "form": form,
        "confirmed": confirmed,
        "required": required_for(user),
        "secret": device.bin_key and _base32(device.bin_key) if device else "",
        "qr": segno.make(device.config_url, error="m").svg_inline(scale=4) if device else "",
    }
    return render(request, "registration/two_factor.html", context)


def _base32(key: bytes) -> str:
    import base64

    return base64.b32encode(key).decode().rstrip("=")
