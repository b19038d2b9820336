"""Administration of organizations, zones and accounts (blueprint)."""
