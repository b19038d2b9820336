"""Extension instances, bound to the app in create_app."""
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = None  # sessions are revocable rows; see auth/sessions.py

csrf = CSRFProtect()
