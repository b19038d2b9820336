"""Every action the portal performs, named `resource.verb[_field_category]`.

Mirrored one-to-one by the `action` declarations in policies/schema.cedarschema (a test fails on
drift). Views, API calls and CLI commands name one of these, never a string literal.
"""
from enum import StrEnum


class Action(StrEnum):
    HOME_VIEW = "home.view"
    ACCOUNT_VIEW_SELF = "account.view_self"
    ACCOUNT_SIGN_OUT_EVERYWHERE = "account.sign_out_everywhere"
    ACCOUNT_MANAGE_MFA = "account.manage_mfa"
    ACCOUNT_STEP_UP = "account.step_up"

    ORG_LIST = "org.list"
    ORG_CREATE = "org.create"
    ORG_VIEW = "org.view"
    ORG_SET_INTAKE = "org.set_intake"
    ZONE_LIST = "zone.list"
    ZONE_CREATE = "zone.create"
    USER_CREATE = "user.create"
    USER_MANAGE = "user.manage"

    REFERRAL_CREATE = "referral.create"
    REFERRAL_SEND_TO = "referral.send_to"
    REFERRAL_LIST_INBOX = "referral.list_inbox"
    REFERRAL_LIST_SENT = "referral.list_sent"
    REFERRAL_VIEW_STATUS = "referral.view_status"
    REFERRAL_VIEW_CONTACT = "referral.view_contact"
    REFERRAL_VIEW_NOTES = "referral.view_notes"
    REFERRAL_VIEW_CONTACT_LOG = "referral.view_contact_log"
    REFERRAL_ACCEPT = "referral.accept"
    REFERRAL_DECLINE = "referral.decline"
    REFERRAL_ASSIGN = "referral.assign"
    REFERRAL_LOG_CONTACT = "referral.log_contact"
    REFERRAL_HOLD = "referral.hold"
    REFERRAL_RESUME = "referral.resume"
    REFERRAL_COMPLETE = "referral.complete"
    REFERRAL_HANDOFF = "referral.handoff"
    REFERRAL_CANCEL = "referral.cancel"
    REFERRAL_REVOKE_CONSENT = "referral.revoke_consent"
    REFERRAL_VIEW_ACCESS_HISTORY = "referral.view_access_history"
    REFERRAL_DISCLOSURE_REPORT = "referral.disclosure_report"
    AUDIT_SEARCH = "audit.search"

    DASHBOARD_VIEW = "dashboard.view"
    DASHBOARD_EXPORT = "dashboard.export"
    RELEASE_LEDGER = "release.ledger"
    AGGREGATE_VIEW = "aggregate.view"


# What a caller may see of a referral: one action per field category.
REFERRAL_VIEWS = (Action.REFERRAL_VIEW_STATUS, Action.REFERRAL_VIEW_CONTACT, Action.REFERRAL_VIEW_NOTES,
                  Action.REFERRAL_VIEW_CONTACT_LOG)
