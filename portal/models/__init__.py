"""SQLAlchemy models, one module per aggregate root. Models import nothing of the web layer."""
from portal.models.notification import Notification
from portal.models.organization import ORG_KINDS, Organization, Zone, organization_zones
from portal.models.release import Release
from portal.models.referral import (Consent, ContactAttempt, DataKey, Referral, ReferralEvent, ReferralService,
                                    consent_recipients, referral_services)
from portal.models.user import ROLES, User, UserSession

__all__ = ["ORG_KINDS", "ROLES", "Consent", "ContactAttempt", "DataKey", "Notification", "Organization", "Referral", "ReferralEvent", "Release",
           "ReferralService", "User", "UserSession", "Zone", "consent_recipients", "organization_zones",
           "referral_services"]
