"""A small `requests` client for the simulator's control surface (`SIMULATOR_CONTROL_URL`)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import requests

logger = logging.getLogger(__name__)


class ControlError(RuntimeError):
    pass


class _Unset:
    """The default of an argument that is left unchanged when not given (None is a meaningful value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class SimulatorControl:
    """Typed helpers over `/_simulator/...`. Every call has a timeout and raises ControlError on failure."""

    def __init__(self, base_url: str, *, ca_bundle: Path | str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # the simulator's CA bundle, explicitly, whatever the environment says
        self._session.verify = str(ca_bundle)
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}{path}", json=json, params=params, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise ControlError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    # ----- managed identities -----
    def create_managed_identity(self, *, trust: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
        """Assign a new user-assigned managed identity to a host (of `cloud=`, global by default) and make the apps in
        `trust` trust it (a federated identity credential; `issuer`, `subject`, `audiences` override its right
        values). Returns its client and principal ids and the `identity_endpoint` and `identity_header` to reach it."""
        return dict(self._call("POST", "/managed-identities", json={"trust": trust or [], **overrides}))

    # ----- general -----
    def health(self) -> bool:
        return bool(self._call("GET", "/health").get("ok"))

    def reset(self) -> None:
        """Back to the seeded world; clears logs, faults, clock, consents, secrets and issued tokens."""
        self._call("POST", "/reset")

    def env(self) -> dict[str, str]:
        return dict(self._call("GET", "/env"))

    def world(self) -> dict[str, Any]:
        return dict(self._call("GET", "/world"))

    # ----- request log -----
    def log(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        since: int | None = None,
        limit: int | None = None,
        **detail: Any,
    ) -> list[dict[str, Any]]:
        """Log entries (oldest first). `service` is entra/partner_center/graph/vault; `path` a regex;
        other keywords match fields of the entry or of its `detail` (grant_type, user, error_code, ...)."""
        params: dict[str, Any] = {
            k: v
            for k, v in {
                "service": service,
                "method": method,
                "path": path,
                "status": status,
                "since": since,
                "limit": limit,
            }.items()
            if v is not None
        }
        params.update({k: str(v) for k, v in detail.items()})
        return list(self._call("GET", "/log", params=params)["entries"])

    def clear_log(self) -> None:
        self._call("DELETE", "/log")

    # ----- state -----
    def state(self, section: str | None = None) -> dict[str, Any]:
        data = self._call("GET", "/state", params={"section": section} if section else None)
        return dict(data[section]) if section else dict(data)

    def consents(self, customer_tenant_id: str | None = None) -> dict[str, Any]:
        """customer tenant id -> application id -> consent (with its grants)."""
        data = self._call("GET", "/state", params={"section": "consents"})["consents"]
        if customer_tenant_id is not None:
            return dict(data.get(customer_tenant_id.lower(), {}))
        return dict(data)

    def grants(self, tenant_id: str | None = None) -> dict[str, dict[str, list[str]]]:
        """client id -> resource -> the delegated permissions the tenant (`tenant_id`) granted it at sign-in; without
        `tenant_id`, "tenant id/client id" -> resource -> permissions for every tenant."""
        entries = self._call("GET", "/state", params={"section": "grants"})["grants"]
        if tenant_id is not None:
            return {e["client_id"]: dict(e["grants"]) for e in entries if e["tenant_id"] == tenant_id.lower()}
        return {f"{e['tenant_id']}/{e['client_id']}": dict(e["grants"]) for e in entries}

    def revoke_grants(
        self, tenant_id: str, client_id: str | None = None, *, permissions: list[str] | None = None
    ) -> int:
        """An administrator removes the delegated permissions the tenant granted the app (every app's when
        `client_id` is None): the next sign-in consents again. With `permissions`, only those go (the grant is
        narrowed). Returns how many grants were changed."""
        path = f"/grants/{tenant_id}" if client_id is None else f"/grants/{tenant_id}/{client_id}"
        params = {"permissions": ",".join(permissions)} if permissions else None
        return int(self._call("DELETE", path, params=params)["removed"])

    def secrets_state(self) -> dict[str, Any]:
        """secret name -> {deleted, versions: [{version, enabled, ...}]} (never the values)."""
        return dict(self._call("GET", "/state", params={"section": "secrets"})["secrets"])

    def more_vaults_state(self) -> list[dict[str, Any]]:
        """The vaults served besides the first, in order: each one's `url` and `secrets` (as `secrets_state`)."""
        return list(self._call("GET", "/state", params={"section": "more_vaults"})["more_vaults"])

    def redemptions(self) -> dict[str, int]:
        """user object id -> refresh-token redemptions."""
        return dict(self._call("GET", "/state", params={"section": "redemptions"})["redemptions"])

    def refresh_tokens(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/state", params={"section": "refresh_tokens"})["refresh_tokens"])

    def refresh_token_info(self, refresh_token: str) -> dict[str, Any] | None:
        """The simulator's record of this refresh token (found by its fingerprint), or None."""
        wanted = hashlib.sha256(refresh_token.encode()).hexdigest()[:32]
        return next((g for g in self.refresh_tokens() if g["fingerprint"] == wanted), None)

    # ----- clock -----
    def now(self) -> float:
        return float(self._call("GET", "/clock")["now"])

    def advance_clock(self, seconds: float) -> float:
        """Move the simulator's clock forward; returns its new time (epoch seconds)."""
        return float(self._call("POST", "/clock", json={"advance": seconds})["now"])

    def advance_days(self, days: float) -> float:
        return self.advance_clock(days * 86400)

    # ----- users and partners -----
    def revoke_user(self, user: str) -> None:
        """An administrator's reset of the user (object id or UPN): earlier refresh tokens get AADSTS50173."""
        self._call("POST", f"/users/{user}/revoke")

    def update_user(self, user: str, **flags: Any) -> dict[str, Any]:
        """Change global_admin / admin_agent / mfa_registered / enabled / display_name / groups of a user."""
        return dict(self._call("PATCH", f"/users/{user}", json=flags))

    def set_user_groups(self, user: str, names: list[str]) -> dict[str, Any]:
        """The security groups (display names) the user is a member of besides AdminAgents, as Graph's memberOf and
        transitiveMemberOf list them (enough of them make several pages)."""
        return self.update_user(user, groups=list(names))

    def set_authentication_contexts(self, contexts: dict[str, str | None]) -> dict[str, Any]:
        """The vendor tenant's Conditional Access authentication contexts, replacing them all: "c1".."c25" -> "mfa"
        (the policy on it asks for MFA) or None (declared, no policy). Seeded: {"c1": "mfa"}."""
        return dict(self._call("PATCH", "/vendor", json={"authentication_contexts": contexts}))

    def set_conditional_access(self, partner_tenant_id: str, policy: str | None) -> None:
        """None, "mfa_required" (AADSTS50076 for tokens without MFA) or "block" (AADSTS53003)."""
        self._call("PATCH", f"/partners/{partner_tenant_id}", json={"conditional_access": policy})

    def update_app(
        self,
        client_id: str,
        *,
        group_membership_claims: str | _Unset | None = UNSET,
        delegated_permissions: dict[str, list[str]] | None = None,
        access_token_optional_claims: list[str] | None = None,
    ) -> dict[str, Any]:
        """Change an app registration (e.g. `sim.env["CPV_CLIENT_ID"]`) until the next `reset()`.

        `group_membership_claims`: the manifest's groupMembershipClaims (None, "None", "SecurityGroup",
        "ApplicationGroup", "DirectoryRole", "All"); "DirectoryRole" and "All" put `wids` into id_tokens.
        Left out, it is not changed (pass None to clear it).
        `delegated_permissions`: resource URL -> permission names, replacing the app's whole map (a resource
        left out loses its permissions).
        `access_token_optional_claims`: the manifest's optionalClaims.accessToken names (e.g. ["idtyp"]), which
        the access tokens issued for this app (as a resource) carry. Returns the app's fields."""
        body: dict[str, Any] = {}
        if not isinstance(group_membership_claims, _Unset):
            body["group_membership_claims"] = group_membership_claims
        if delegated_permissions is not None:
            body["delegated_permissions"] = delegated_permissions
        if access_token_optional_claims is not None:
            body["access_token_optional_claims"] = access_token_optional_claims
        return dict(self._call("PATCH", f"/apps/{client_id}", json=body))

    def add_customers(
        self, partner_tenant_id: str, count: int = 1, *, names: list[str] | None = None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"count": count}
        if names:
            body["names"] = names
        return list(self._call("POST", f"/partners/{partner_tenant_id}/customers", json=body)["customers"])

    def remove_customer(self, partner_tenant_id: str, customer_tenant_id: str) -> None:
        self._call("DELETE", f"/partners/{partner_tenant_id}/customers/{customer_tenant_id}")

    # ----- GDAP -----
    def gdap_state(
        self,
        partner_tenant_id: str,
        customer_tenant_id: str,
        state: str,
        *,
        user: str | None = None,
        group: str | None = None,
    ) -> dict[str, Any]:
        """Replace the customer's GDAP relationships with a preset: "active", "none", "approval_pending",
        "no_consent_role", "role_unassigned", "assignment_pending", "user_not_in_group", "expiring",
        "expiring_global_admin", "expired", "terminated" or "mlt", arranged for `user` (object id or UPN; default
        the partner's admin@). `group="own"` assigns the roles to a new group of the customer's own holding the
        user. Returns {"customer", "state", "relationships": [Graph's delegatedAdminRelationship with its
        "accessAssignments"], "security_groups": [...]}."""
        body: dict[str, Any] = {"state": state}
        if user is not None:
            body["user"] = user
        if group is not None:
            body["group"] = group
        return dict(self._call("POST", f"/partners/{partner_tenant_id}/gdap/{customer_tenant_id}", json=body))

    def gdap_relationships(self, partner_tenant_id: str) -> list[dict[str, Any]]:
        """The partner's GDAP relationships as the world holds them (Graph's form, each with "accessAssignments")."""
        return list(self._call("GET", f"/partners/{partner_tenant_id}/gdap")["relationships"])

    def gdap_security_groups(self, partner_tenant_id: str) -> list[dict[str, Any]]:
        """The partner's security groups ({"id", "display_name", "members"}; AdminAgents is the admin_agent flag)."""
        return list(self._call("GET", f"/partners/{partner_tenant_id}/gdap")["security_groups"])

    def gdap_group_members(self, partner_tenant_id: str, group_id: str, members: list[str]) -> dict[str, Any]:
        """Set a security group's members (object ids or UPNs), replacing the list; returns the group."""
        return dict(
            self._call("PUT", f"/partners/{partner_tenant_id}/groups/{group_id}/members", json={"members": members})
        )

    def add_consent(
        self,
        customer_tenant_id: str,
        *,
        application_id: str | None = None,
        grants: list[dict[str, str]] | None = None,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        """Create an ApplicationConsent directly (as if Partner Center had been called)."""
        body: dict[str, Any] = {"customer": customer_tenant_id}
        if application_id:
            body["application_id"] = application_id
        if grants is not None:
            body["grants"] = grants
        if display_name:
            body["display_name"] = display_name
        return dict(self._call("POST", "/consents", json=body))

    def remove_consent(self, customer_tenant_id: str, application_id: str) -> bool:
        return bool(self._call("DELETE", f"/consents/{customer_tenant_id}/{application_id}")["removed"])

    # ----- customer tenants: service principals, grants, workloads, Graph throttling -----
    def directory(self, customer_tenant_id: str) -> dict[str, Any]:
        """The customer tenant's `workloads`, `service_principals` and `oauth2_permission_grants` (Graph's form)."""
        return dict(self._call("GET", f"/tenants/{customer_tenant_id}/directory"))

    def narrow_grant(
        self,
        customer_tenant_id: str,
        permissions: list[str],
        *,
        application_id: str | None = None,
        resource_app_id: str | None = None,
    ) -> int:
        """Drift: take `permissions` out of the app's grants (default the CPV app; on `resource_app_id` only, or on
        every resource). Returns how many grants changed."""
        path = f"/tenants/{customer_tenant_id}/grants" + (f"/{application_id}" if application_id else "")
        body: dict[str, Any] = {"permissions": permissions}
        if resource_app_id:
            body["resource"] = resource_app_id
        return int(self._call("PATCH", path, json=body)["changed"])

    def delete_grants(self, customer_tenant_id: str, *, application_id: str | None = None) -> int:
        """Drift: delete the app's oauth2PermissionGrants in the tenant (its service principal stays)."""
        path = f"/tenants/{customer_tenant_id}/grants" + (f"/{application_id}" if application_id else "")
        return int(self._call("DELETE", path)["removed"])

    def delete_service_principal(self, customer_tenant_id: str, *, application_id: str | None = None) -> bool:
        """Drift: delete the app's service principal in the tenant, its grants with it."""
        path = f"/tenants/{customer_tenant_id}/service-principal" + (f"/{application_id}" if application_id else "")
        return bool(self._call("DELETE", path)["removed"])

    def remove_workload(self, customer_tenant_id: str, workload: str) -> bool:
        """The tenant loses a workload's resource service principal ("exchange", "sharepoint", "azure"; Microsoft
        Graph's cannot go), and the grants on it."""
        return bool(self._call("DELETE", f"/tenants/{customer_tenant_id}/workloads/{workload}")["changed"])

    def add_workload(self, customer_tenant_id: str, workload: str) -> None:
        self._call("PUT", f"/tenants/{customer_tenant_id}/workloads/{workload}")

    def consent_state(self, customer_tenant_id: str, state: str) -> dict[str, Any]:
        """The CPV app's consent in the customer tenant as a preset: "none", "consented", "drifted",
        "grants_deleted" or "no_exchange" (simulator/README.md)."""
        return dict(self._call("POST", f"/tenants/{customer_tenant_id}/consent-state", json={"state": state}))

    def throttle_graph(self, customer_tenant_id: str, times: int = 1, *, retry_after: int = 10) -> None:
        """Graph answers the next `times` requests with a token of the tenant 429 with `Retry-After: retry_after`."""
        body = {"times": times, "retry_after": retry_after}
        self._call("POST", f"/tenants/{customer_tenant_id}/graph-throttle", json=body)

    def clear_graph_throttle(self, customer_tenant_id: str) -> None:
        self._call("DELETE", f"/tenants/{customer_tenant_id}/graph-throttle")

    def issue_refresh_token(
        self,
        user: str,
        *,
        client_id: str | None = None,
        scope: str | None = None,
        mfa: bool | None = None,
        prompt: str | None = None,
    ) -> str:
        """A refresh token for `user` (object id or UPN) as if they had signed in asking `scope` (default
        "https://api.partnercenter.microsoft.com/user_impersonation openid profile offline_access") and accepted:
        the consent is recorded as the sign-in page records it (`.default` consents the registration's list, and
        `prompt="consent"` does so again), and refused as it refuses it (ControlError naming AADSTS90094 for an
        admin-restricted permission asked by a user who is not an administrator)."""
        body: dict[str, Any] = {"user": user}
        if client_id:
            body["client_id"] = client_id
        if scope:
            body["scope"] = scope
        if mfa is not None:
            body["mfa"] = mfa
        if prompt is not None:
            body["prompt"] = prompt
        return str(self._call("POST", "/tokens", json=body)["refresh_token"])

    # ----- settings -----
    def settings(self) -> dict[str, Any]:
        return dict(self._call("GET", "/settings"))

    def set_settings(self, **changes: Any) -> dict[str, Any]:
        """Change settings (see simulator.state.Settings): pc_rate_limit, vault_limits, ..."""
        return dict(self._call("POST", "/settings", json=changes))

    def set_pc_rate_limit(self, per_second: float | None, *, burst: float | None = None) -> None:
        """Partner Center requests per second per application id; None turns the throttle off."""
        self.set_settings(pc_rate_limit=per_second, pc_burst=burst)

    def set_vault_limits(
        self,
        enabled: bool,
        *,
        creates: int | None = None,
        others: int | None = None,
        window: float | None = None,
    ) -> None:
        changes: dict[str, Any] = {"vault_limits": enabled}
        if creates is not None:
            changes["vault_create_limit"] = creates
        if others is not None:
            changes["vault_other_limit"] = others
        if window is not None:
            changes["vault_window"] = window
        self.set_settings(**changes)

    # ----- faults -----
    def inject_fault(
        self,
        service: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        latency: float = 0.0,
        times: int | None = 1,
        rate: float | None = None,
    ) -> str:
        """Answer matching requests (`path` is a regex) with `status`/`body`/`headers` after `latency`
        seconds; `times=None` until removed; `rate` for a fraction of them. Returns the fault id."""
        payload = {
            "service": service,
            "status": status,
            "method": method,
            "path": path,
            "body": body,
            "headers": headers or {},
            "latency": latency,
            "times": times,
            "rate": rate,
        }
        return str(self._call("POST", "/faults", json=payload)["id"])

    def inject_entra_error(
        self,
        code: int,
        *,
        times: int | None = 1,
        rate: float | None = None,
        tenant: str | None = None,
        user: str | None = None,
        grant_type: str | None = None,
        client_id: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> str:
        """The token endpoint answers Entra's exact error body for AADSTS `code` (e.g. 50076) to
        matching requests. Returns the fault id."""
        payload = {
            "code": code,
            "times": times,
            "rate": rate,
            "tenant": tenant,
            "user": user,
            "grant_type": grant_type,
            "client_id": client_id,
            "status": status,
            "retry_after": retry_after,
        }
        return str(self._call("POST", "/entra-errors", json=payload)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults")["faults"])

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"/faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    # ----- canaries -----
    def issued_secrets(self, kind: str | None = None) -> list[str]:
        """Every secret value the simulator issued (codes, tokens, client secrets, private keys)."""
        return list(self._call("GET", "/issued", params={"kind": kind} if kind else None)["secrets"])

    def find_leaks(self, text: str) -> list[str]:
        """The issued secrets that occur in `text` (empty when nothing leaked)."""
        return [secret for secret in self.issued_secrets() if secret and secret in text]
