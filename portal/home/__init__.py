"""Home pages by organization kind, the public transparency page, and /healthz."""
