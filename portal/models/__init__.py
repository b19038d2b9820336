"""SQLAlchemy models, one module per aggregate root. Models import nothing of the web layer."""
from portal.models.audit import AuditCheckpoint, AuditEvent, AuditHead
from portal.models.mfa import RecoveryCode, UserMfa
from portal.models.identity import IdentityProvider, LinkedIdentity, PendingSsoLogin
from portal.models.account_token import TOKEN_PURPOSES, AccountToken, LoginThrottle
from portal.models.notification import Notification
from portal.models.organization import ORG_KINDS, Organization, Zone, organization_zones
from portal.models.release import Release
from portal.models.rollup import DailyCount, DailyService, DirtyDay, MonthlyCount, MonthlyService
from portal.models.referral import (Consent, ContactAttempt, DataKey, Referral, ReferralEvent, ReferralService,
                                    consent_recipients, referral_services)
from portal.models.user import ROLES, User, UserSession

__all__ = ["ORG_KINDS", "ROLES", "TOKEN_PURPOSES", "AccountToken", "LoginThrottle", "AuditCheckpoint", "AuditEvent", "AuditHead", "Consent", "ContactAttempt", "DailyCount", "DailyService", "DataKey", "DirtyDay", "MonthlyCount", "MonthlyService", "Notification", "Organization", "Referral", "ReferralEvent", "Release",
           "RecoveryCode", "ReferralService", "User", "UserMfa", "UserSession", "Zone", "consent_recipients", "organization_zones",
           "referral_services"]
