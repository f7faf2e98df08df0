"""The audit log in words, for the audit page and its CSV: action labels, detail keys labelled, values for a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cpv.clouds import ALL_PARTNER_CLOUDS
from partners.models import AuditEvent, Partner, SignInFailure

# Every action the product records, with what a person reads for it. An action missing here is still shown,
# spelled out from its name (see `action_label`).
ACTION_LABELS: dict[str, str] = {
    "partner.created": "Created the partner",
    "partner.invited": "Invited the partner",
    "partner.consented": "The partner consented",
    "partner.reconsent_link_created": "Created a re-consent link",
    "partner.reconsent_needed": "Re-consent became needed",
    "partner.deactivated": "Deactivated the partner",
    "partner.reactivated": "Reactivated the partner",
    "partner.deleted": "Deleted the partner (a stray invitation)",
    "partner.token_renewed": "Renewed the partner's token",
    "partner.token_imported": "Imported a token for the partner",
    "partner.token_revoked": "Revoked the partner's token",
    "partner.renewal_requested": "Asked for a token renewal",
    "partner.sync_requested": "Asked for a customer sync",
    "partner.customers_synced": "Synced the partner's customers",
    "partner.consents_requested": "Asked for ApplicationConsent",
    "partner.consents_applied": "Applied ApplicationConsent to a batch of customers",
    "partner.consents_scheduled": "Finished the ApplicationConsent scheduled for the partner's customers",
    "partner.consents_finished": "Finished the ApplicationConsent staff asked for",
    "portal.reconsent_started": "Started a re-consent from the partner portal",
    "staff.created": "Created a staff account",
    "staff.enabled": "Enabled a staff account",
    "staff.disabled": "Disabled a staff account",
    "staff.unlocked": "Unlocked a staff account's sign-in",
    "staff.role_set": "Changed a staff member's role",
    "staff.signed_in": "Signed in",
    "staff.sign_in_failed": "A sign-in was refused",
    "staff.password_changed": "Changed their own password",
    "staff.password_frozen": "Froze a password sign-in after too many wrong codes",
    "staff.password_unfrozen": "Released a frozen password sign-in",
    "app_key.rotation_started": "Started rotating the app's certificate",
    "app_key.added": "Added the new certificate to the app registration",
    "app_key.probed": "Entra accepted the app's new certificate",
    "app_key.switched": "Switched the control panel to the app's new certificate",
    "app_key.old_removed": "Removed the app's old certificate from the registration",
    "staff.demo_user_created": "Created the demo's staff account",
    "staff.demo_user_reset": "Reset the demo's staff account",
    "vault.key_rotated": "Rotated the vault key",
    "vault.reseal_started": "Started sealing the vault's tokens to its public key",
    "vault.resealed": "Sealed the vault's tokens to its public key",
    "api_client.created": "Registered an API client",
    "api_client.changed": "Changed what an API client may see and ask for",
    "api_client.key_rotated": "Issued a new API key to a client (the old one ends after the overlap)",
    "api_client.key_revoked": "Revoked an API key",
    "api_client.revoked": "Revoked an API client",
    "api.access_token_issued": "Handed an access token to an API client",
    "admin.added": "Added a record in the admin",
    "admin.changed": "Changed a record in the admin",
    "admin.deleted": "Deleted a record in the admin",
    "webhook.created": "Created a webhook subscription",
    "webhook.changed": "Changed a webhook subscription",
    "webhook.secret_rotated": "Rotated a webhook subscription's signing secret",
    "webhook.redelivered": "Sent a webhook delivery again by hand",
}

# The keys the services write into `detail`, in words.
DETAIL_LABELS: dict[str, str] = {
    "old": "Old certificate (SHA-256)",
    "new": "New certificate (SHA-256)",
    "client_id": "App (client id)",
    "emailed": "Emailed",
    "name": "Name",
    "cloud": "Cloud",
    "environment": "Environment",
    "status": "Status",
    "previous_status": "Previous status",
    "token_usable": "Token still worked",
    "locked": "Was locked out",
    "reason": "Reason",
    "flow": "Consent attempt",
    "kind": "Kind",
    "tenant_id": "Tenant id",
    "user_oid": "User object id",
    "user": "User",
    "username": "User",
    "email": "Email",
    "role": "Role",
    "previous": "Previous role",
    "version": "Vault version",
    "versions_disabled": "Vault versions disabled",
    "generation": "Token generation",
    "forced": "Forced",
    "codes": "Microsoft error codes",
    "key_id": "Vault key",
    "rows": "Rows",
    "rotated": "Rotated",
    "already_current": "Already current",
    "resealed": "Re-sealed",
    "already_sealed": "Already sealed",
    "failed": "Failed",
    "listed": "Customers listed",
    "created": "New",
    "updated": "Changed",
    "removed": "Removed",
    "correlation_id": "Correlation id",
    "operation": "Operation",
    "started_at": "Started at",
    "total": "Total",
    "task_id": "Task id",
    "model": "Record type",
    "object_id": "Record id",
    "object": "Record",
    "change": "Change",
    "tried": "Customers tried",
    "consented": "Consented",
    "already_present": "Already present",
    "skipped": "Skipped (removed, or being applied by another worker)",
    "retrying": "Left for a later run",
    "method": "Sign-in method",
    "address": "Client address",
    "wrong_codes": "Wrong codes in a row",
    "own": "Own account",
    "superuser": "Superuser",
    "why": "Why",
    "url": "URL",
    "event_types": "Event types",
    "before": "Before",
    "after": "After",
    "previous_until": "Previous secret signs until",
    "delivery": "Delivery",
    "event": "Event",
    "type": "Event type",
}


# Values the services write as codes, in the words the pages use for them.
VALUE_WORDS: dict[str, dict[str, str]] = {
    "status": dict(Partner.Status.choices),
    "previous_status": dict(Partner.Status.choices),
    "cloud": {str(k): str(v) for k, v in ALL_PARTNER_CLOUDS},
    "environment": dict(Partner.Environment.choices),
    "reason": dict(SignInFailure.choices),
}


def action_label(action: str) -> str:
    """An audit action's label, or its name spelled out ("partner.foo_bar" → "Partner: foo bar")."""
    if action in ACTION_LABELS:
        return ACTION_LABELS[action]
    area, _, verb = action.partition(".")
    words = (verb or area).replace("_", " ").strip()
    return f"{area.replace('_', ' ').capitalize()}: {words}" if verb else words.capitalize()


def action_choices(extra: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The actions a filter offers: every known one, and any other already in the log, sorted by label."""
    actions = set(ACTION_LABELS) | set(extra)
    return sorted(((a, action_label(a)) for a in actions), key=lambda choice: choice[1].lower())


def value_in_words(value: Any) -> str:
    """A detail value for a person: yes/no, a dash for nothing, lists joined, dicts as "label: value"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{detail_label(k)}: {detail_value(k, v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(value_in_words(v) for v in value) or "—"
    return str(value)


def detail_label(key: Any) -> str:
    key = str(key)
    return DETAIL_LABELS.get(key, key.replace("_", " ").capitalize())


def detail_value(key: Any, value: Any) -> str:
    """A detail's value for a person: a code in words, an "…_at" as UTC time, else `value_in_words`."""
    words = VALUE_WORDS.get(str(key), {})
    if isinstance(value, str) and value in words:
        return words[value]
    if str(key).endswith("_at") and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value_in_words(value)


def detail_in_words(detail: Any) -> list[tuple[str, str]]:
    """An audit row's detail as (label, value) pairs, in the order they were written."""
    if not isinstance(detail, dict):
        return [("Detail", value_in_words(detail))] if detail else []
    return [(detail_label(k), detail_value(k, v)) for k, v in detail.items()]


def actor_in_words(event: AuditEvent) -> str:
    """The staff member's full name (and username), or "System"; reads `event.actor` (select it with the event)."""
    user = event.actor
    if user is None:
        return "System" if event.actor_label in ("", "system") else event.actor_label
    full = user.get_full_name().strip()
    username = user.get_username()
    return f"{full} ({username})" if full and full != username else username
