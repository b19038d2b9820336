"""Audit actions that are not policy decisions: sign-in events and the operators' commands.

Policy decisions are recorded under their Cedar action names (portal/policy/actions.py); these
name what happened outside the gate. An event never carries an e-mail address or a password.
"""
from enum import StrEnum


class Event(StrEnum):
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOGOUT = "auth.logout"
    SECOND_FACTOR_FAILED = "auth.second_factor_failed"
    SECOND_FACTOR_ENROLLED = "auth.second_factor_enrolled"
    SECOND_FACTOR_RESET = "auth.second_factor_reset"  # by an admin, for someone who lost it
    ACCOUNT_LOCKED = "auth.account_locked"
    PASSWORD_RESET = "auth.password_reset"
    INVITATION_ACCEPTED = "auth.invitation_accepted"
    ACCOUNT_LINK_REFUSED = "auth.account_link_refused"  # an invalid, expired or used invitation/reset link
    SSO_LOGIN_FAILED = "auth.sso_failed"

    RELEASE_PUBLISHED = "system.release_published"
    RELEASE_CORRECTED = "system.release_corrected"
    RETENTION_RUN = "system.retention_run"
    KEYS_ROTATED = "system.keys_rotated"
    DASHBOARDS_REBUILT = "system.dashboards_rebuilt"
