"""SQLAlchemy models, one module per aggregate root. Models import nothing of the web layer."""
from portal.models.organization import ORG_KINDS, Organization, Zone, organization_zones
from portal.models.user import ROLES, User, UserSession

__all__ = ["ORG_KINDS", "ROLES", "Organization", "User", "UserSession", "Zone", "organization_zones"]
