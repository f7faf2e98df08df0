"""Forms of the staff pages, and the sign-in form with its brute-force protection."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from cpv.clouds import ALL_PARTNER_CLOUDS
from dashboard.staff_actions import BULK_ACTIONS
from events.models import EventType
from partners.access import ROLE_GROUPS, Role, password_sign_in_allowed
from partners.audit_words import action_choices
from partners.models import Partner, SignInFailure
from partners.staff import (
    password_sign_in_frozen,
    sign_in_attempt_begin,
    sign_in_attempt_right,
    sign_in_window,
    staff_sign_in_failed,
)

logger = logging.getLogger(__name__)


class SignInForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password did not match. Please try again.",
        "locked": (
            "Too many failed sign-ins for this account or from your network. "
            "Wait %(minutes)d minutes and try again, or ask an admin."
        ),
        "frozen": (
            "Too many wrong authenticator codes were given after this account's password: its password sign-in is "
            "frozen. Another admin can release it on the staff page, or someone with access to the server can run "
            "`python manage.py staff_unfreeze %(username)s`."
        ),
    }

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))
        # Counted before the password is checked, so that guesses sent together cannot all pass the limit.
        if not sign_in_attempt_begin(self.request, username):
            logger.warning("sign-in refused: too many failures for this username or address")
            raise forms.ValidationError(
                self.error_messages["locked"], code="locked", params={"minutes": sign_in_window() // 60}
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            staff_sign_in_failed(request=self.request, username=username, reason=SignInFailure.WRONG_PASSWORD)
            raise
        user = self.get_user()
        if not password_sign_in_allowed(user):
            # Passwords are the admins' break-glass: anyone else signs in with Microsoft. The answer is the wrong
            # password's, so that the form tells nobody which passwords are right.
            staff_sign_in_failed(
                request=self.request, username=username, user=user, reason=SignInFailure.PASSWORD_NOT_ALLOWED
            )
            logger.warning("sign-in refused: a password sign-in by an account that signs in with Microsoft")
            raise self.get_invalid_login_error()
        sign_in_attempt_right(self.request, username)
        if password_sign_in_frozen(user):
            staff_sign_in_failed(request=self.request, username=username, user=user, reason=SignInFailure.FROZEN)
            logger.warning("sign-in refused: the account's password sign-in is frozen")
            raise forms.ValidationError(
                self.error_messages["frozen"], code="frozen", params={"username": user.get_username()}
            )
        # The view clears the account's failure count once the sign-in is finished (a TOTP code may follow).
        return cleaned


class TotpCodeForm(forms.Form):
    """The six digits an authenticator app shows (spaces are forgiven)."""

    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )

    def clean_code(self) -> str:
        code = "".join(str(self.cleaned_data["code"]).split())
        if not (code.isdigit() and len(code) == 6):
            raise forms.ValidationError("Enter the 6 digits your authenticator app shows.")
        return code


class StaffMicrosoftForm(forms.Form):
    """Bind (or, left empty, unbind) a staff account's Microsoft Entra object id in the vendor's tenant."""

    username = forms.CharField(max_length=150)
    object_id = forms.UUIDField(
        required=False,
        label="Microsoft Entra object id",
        error_messages={"invalid": "Enter the account's object id: a GUID, as Entra admin center shows it."},
    )


# --- the partner list ----------------------------------------------------------------------------------------


def _blank(choices: Any, label: str) -> list[tuple[str, str]]:
    return [("", label), *[(str(v), str(n)) for v, n in choices]]


# Partner Center's last `isMfaCompliant` for the partner (partners.models.Partner.mfa_compliant).
MFA_CHOICES = [
    ("compliant", "MFA compliant"),
    ("not_compliant", "Not MFA compliant"),
    ("unknown", "MFA not checked yet"),
]


class PartnerFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    status = forms.ChoiceField(required=False, choices=_blank(Partner.Status.choices, "Any status"))
    cloud = forms.ChoiceField(required=False, choices=_blank(ALL_PARTNER_CLOUDS, "Any cloud"))
    environment = forms.ChoiceField(required=False, choices=_blank(Partner.Environment.choices, "Any environment"))
    health = forms.ChoiceField(required=False, label="Token health")
    mfa = forms.ChoiceField(required=False, label="MFA", choices=[("", "Any MFA state"), *MFA_CHOICES])
    sort = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)

    def __init__(self, *args: Any, health_choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["q"].widget.attrs.update(
            placeholder="Name, domain, contact email, customer or tenant id", autocomplete="off"
        )
        self.fields["health"].choices = _blank(health_choices, "Any token health")  # type: ignore[attr-defined]

    def values(self) -> dict[str, str]:
        """The valid filters (an invalid choice is ignored rather than failing the page)."""
        if self.is_valid():
            return {k: v or "" for k, v in self.cleaned_data.items()}
        return {k: str(v) for k, v in self.cleaned_data.items() if k not in self.errors}


BULK_LIMIT = 100


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BULK_ACTIONS)
    partners = forms.TypedMultipleChoiceField(coerce=str, choices=(), required=True)
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_partners(self) -> list[str]:
        codes: list[str] = self.cleaned_data["partners"]
        if len(codes) > BULK_LIMIT:
            raise forms.ValidationError(f"Choose at most {BULK_LIMIT} partners at a time.")
        return codes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The codes are checked against the database by the view; here they only need to be UUIDs.
        submitted = self.data.getlist("partners") if hasattr(self.data, "getlist") else []
        self.fields["partners"].choices = [(c, c) for c in submitted if _is_uuid(c)]  # type: ignore[attr-defined]


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=300, label="Reason (shown on the partner's page)")
    send_email = forms.BooleanField(required=False, initial=True, label="Email the link to the partner's contact")


# --- the audit log ---------------------------------------------------------------------------------------------


# Every action of one area, offered above the single actions.
AUDIT_AREAS = [
    ("partner.", "Every partner action"),
    ("staff.", "Every staff account action"),
    ("portal.", "Every partner portal action"),
    ("vault.", "Every vault action"),
    ("admin.", "Every change in the admin"),
]


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150)
    action = forms.ChoiceField(required=False, choices=())
    partner = forms.CharField(required=False, max_length=200, label="Partner (name or code)")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, actions: list[str] | tuple[str, ...] = (), **kwargs: Any) -> None:
        """`actions`: the actions already in the log, offered beside the known ones."""
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [  # type: ignore[attr-defined]
            ("", "Any action"),
            ("Areas", AUDIT_AREAS),
            ("Actions", action_choices(actions)),
        ]


# --- staff accounts --------------------------------------------------------------------------------------------

ROLE_CHOICES = [(str(int(Role.NONE)), "no role")] + [(str(int(r)), name) for r, name in ROLE_GROUPS.items()]


class StaffRoleForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.HiddenInput)
    role = forms.TypedChoiceField(choices=ROLE_CHOICES, coerce=lambda v: Role(int(v)))


class StaffActiveForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.HiddenInput)
    active = forms.BooleanField(required=False, widget=forms.HiddenInput)


class StaffCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), min_length=12)
    role = forms.TypedChoiceField(
        choices=ROLE_CHOICES[1:], coerce=lambda v: Role(int(v)), initial=str(int(Role.VIEWER))
    )


class WebhookForm(forms.Form):
    """A webhook subscription: its name, its HTTPS URL, the event types it receives, whether it is active."""

    name = forms.CharField(max_length=100)
    url = forms.URLField(max_length=2000, label="URL", assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple, label="Event types"
    )
    active = forms.BooleanField(required=False, initial=True)
