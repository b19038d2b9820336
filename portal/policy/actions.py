"""Every action the portal performs, named `resource.verb[_field_category]`.

Mirrored one-to-one by the `action` declarations in policies/schema.cedarschema (a test fails on
drift). Views, API calls and CLI commands name one of these, never a string literal.
"""
from enum import StrEnum


class Action(StrEnum):
    HOME_VIEW = "home.view"
    ACCOUNT_VIEW_SELF = "account.view_self"

    ORG_LIST = "org.list"
    ORG_CREATE = "org.create"
    ORG_VIEW = "org.view"
    ZONE_LIST = "zone.list"
    ZONE_CREATE = "zone.create"
    USER_CREATE = "user.create"
    USER_MANAGE = "user.manage"

    REFERRAL_VIEW_STATUS = "referral.view_status"
    REFERRAL_VIEW_CONTACT = "referral.view_contact"
    REFERRAL_VIEW_NOTES = "referral.view_notes"
