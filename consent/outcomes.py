"""What each outcome of a consent attempt means, in words for the partner and for the vendor's staff."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Outcome:
    code: str
    title: str
    explanation: str
    what_to_do: str
    retry: bool
    # For the vendor's staff, where they have something to do that the partner cannot.
    staff_note: str = ""
    # The title as the vendor's staff read it, where the partner's words ("You ...") would be wrong for them.
    staff_title: str = ""

    @property
    def title_for_staff(self) -> str:
        return self.staff_title or self.title

    def worded_for(self, vendor: str) -> Outcome:
        """The outcome as the partner reads it, naming the vendor where the words say {vendor}."""
        return replace(
            self,
            title=self.title.replace("{vendor}", vendor),
            explanation=self.explanation.replace("{vendor}", vendor),
            what_to_do=self.what_to_do.replace("{vendor}", vendor),
        )


SUCCESS = "success"

OUTCOMES: dict[str, Outcome] = {
    o.code: o
    for o in [
        Outcome(
            SUCCESS,
            "Consent recorded",
            "Your organisation has consented, and the control panel can now act for you in Partner Center.",
            "Nothing more is needed. You can close this page.",
            retry=False,
        ),
        Outcome(
            "declined",
            "You declined the consent",
            "The sign-in was cancelled, so nothing was granted and nothing was stored.",
            "If that was a mistake, start again and choose Accept on Microsoft's page.",
            retry=True,
            staff_title="Declined by the partner's admin",
        ),
        Outcome(
            "not_global_admin",
            "That account is not a Global Administrator",
            "Consent for the whole organisation must come from a Global Administrator of your Microsoft Entra tenant.",
            "Sign in again with an account that is a Global Administrator (a dedicated integration account is best).",
            retry=True,
            staff_title="The partner's account is not a Global Administrator",
        ),
        Outcome(
            "role_unproven",
            "We could not confirm that the account is a Global Administrator",
            "Consent must come from a Global Administrator, and Microsoft gave the control panel no way to check "
            "the account's role. Nothing was stored.",
            "Tell {vendor}: the setup of its Microsoft app must change before you can consent. Then try again.",
            retry=True,
            staff_note="No token listed the user's directory roles and Microsoft Graph did not name them. Check that "
            "the app registration lists Microsoft Graph RoleManagement.Read.Directory (delegated) and that the "
            "partner consented after it was added, or make the id_token carry directory roles "
            "(groupMembershipClaims: DirectoryRole in its manifest). CPV_GLOBAL_ADMIN_EVIDENCE=warn accepts such "
            "consents on Partner Center's Admin Agent check alone.",
        ),
        Outcome(
            "role_permission_missing",
            "We could not confirm that the account is a Global Administrator",
            "Consent must come from a Global Administrator, and {vendor}'s Microsoft app does not yet ask for the "
            "Microsoft Graph permission RoleManagement.Read.Directory, which reads directory roles, so the role "
            "could not be checked. Nothing was stored.",
            "Tell {vendor} that its Microsoft app registration must list Microsoft Graph "
            "RoleManagement.Read.Directory (delegated); then try again.",
            retry=True,
            staff_note="The consent asks for Partner Center's .default scope, which grants exactly the delegated "
            "permissions the app registration lists. Add Microsoft Graph RoleManagement.Read.Directory (delegated; "
            "and User.Read) under the app registration's API permissions, then have the partner consent again. "
            "Setting groupMembershipClaims to DirectoryRole in the manifest also puts the roles in the id_token.",
        ),
        Outcome(
            "partner_center_refused",
            "Partner Center did not accept the sign-in",
            "Microsoft signed you in, but Partner Center refused the token it issued, twice. Nothing was stored.",
            "Check that the account is an Admin Agent in Partner Center (Account settings > User management), then "
            "try again. If it keeps happening, send the reference below to {vendor}.",
            retry=True,
            staff_note="Partner Center answered 401 (not its MFA refusal, 900421) to a fresh token too: the account "
            "may lack the Admin Agent role, or the app id may not be enrolled as a Control Panel Vendor app in Partner "
            "Center, or the app registration may not list Partner Center user_impersonation.",
        ),
        Outcome(
            "not_admin_agent",
            "That account is not an Admin Agent in Partner Center",
            "Partner Center refused the account: it needs the Admin Agent role to act for your customers.",
            "In Partner Center, give the account the Admin Agent role (Account settings > User management), "
            "then try again.",
            retry=True,
            staff_title="The partner's account is not an Admin Agent in Partner Center",
        ),
        Outcome(
            "no_mfa",
            "Multi-factor authentication is required",
            "Partner Center only accepts sign-ins that used multi-factor authentication, and this one did not.",
            "Register MFA for the account (or sign in with one that has it) and try again.",
            retry=True,
        ),
        Outcome(
            "conditional_access",
            "A Conditional Access policy blocked the sign-in",
            "A policy in your tenant does not allow this sign-in.",
            "Ask your administrator to exclude the integration account from that policy, then try again.",
            retry=True,
        ),
        Outcome(
            "wrong_tenant",
            "That account belongs to another organisation",
            "This link is for a specific Microsoft tenant, and the account you used is from a different one.",
            "Sign in with an account of the organisation the invitation was sent to.",
            retry=True,
            staff_title="The partner signed in with an account of another organisation",
        ),
        Outcome(
            "tenant_taken",
            "That organisation is already registered",
            "The Microsoft tenant you signed in with is already connected to another partner record here.",
            "Contact {vendor}: they can tell you which record it is, or re-send the right link.",
            retry=False,
        ),
        Outcome(
            "expired_link",
            "This link has expired",
            "Links to consent work for a limited time, and a newer link replaces every earlier one: this one is past "
            "its time, or was replaced (perhaps while you were signing in). Nothing was stored.",
            "Open the newest link {vendor} sent to your organisation, or ask for a fresh one below: we email it to "
            "your organisation's contact.",
            retry=False,
            staff_title="The consent link had expired or was replaced",
        ),
        Outcome(
            "link_unknown",
            "This link does not work",
            "It is not one of our consent links, or it was changed on the way (cut short in an email, for one).",
            "Open the link again exactly as it was sent, or write to {vendor} for a new one.",
            retry=False,
        ),
        Outcome(
            "link_replaced",
            "This link was replaced by a newer one",
            "Each new consent link replaces the earlier ones, so only the newest one works.",
            "Use the newest link you received, or ask for a fresh one below: we email it to your organisation's "
            "contact.",
            retry=False,
        ),
        Outcome(
            "link_used",
            "This consent is already done",
            "This link was used for a consent that succeeded, so it is not needed any more.",
            "Nothing more is needed. The partner portal shows your organisation's consent and customers.",
            retry=False,
        ),
        Outcome(
            "link_closed",
            "{vendor} is not taking consent from your organisation now",
            "The consent links for your organisation were switched off by {vendor}.",
            "Write to {vendor} if you expected to consent: they can switch them on again.",
            retry=False,
        ),
        Outcome(
            "fresh_link_sent",
            "A new link is on its way",
            "We emailed a new consent link to your organisation's contact. It replaces every earlier link.",
            "Open the newest email from {vendor} and follow its link. Nothing arrived within a few minutes? Check "
            "the spam folder, or write to {vendor}.",
            retry=False,
        ),
        Outcome(
            "expired",
            "The sign-in took too long",
            "The sign-in was not finished in time, so it was abandoned. Nothing was stored.",
            "Start again; the sign-in takes about a minute.",
            retry=True,
        ),
        Outcome(
            "microsoft_error",
            "Microsoft could not complete the sign-in",
            "Microsoft's sign-in answered with an error. Nothing was stored.",
            "Try again in a few minutes. If it keeps happening, send the reference below to {vendor}.",
            retry=True,
        ),
        Outcome(
            "our_error",
            "Something went wrong on our side",
            "The control panel could not finish recording your consent. Nothing half-done was kept.",
            "Try again in a few minutes. If it keeps happening, send the reference below to {vendor}.",
            retry=True,
            staff_title="The control panel could not record the consent",
        ),
    ]
}


def outcome(code: str) -> Outcome:
    return OUTCOMES.get(code, OUTCOMES["our_error"])
