from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class CodeForm(FlaskForm):
    """A second-factor code: six digits from the authenticator app, or a recovery code."""
    code = StringField("Code", validators=[DataRequired(message="Enter the code."), Length(max=64)])
