"""Web plumbing shared by every blueprint: security headers, error pages, htmx helper."""
