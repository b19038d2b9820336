"""The referral and consent workflow: `service.py` holds the rules, `views.py` is thin."""
