from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length


class ForgotForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired("Enter the e-mail address of your account."),
                                             Length(max=254)])


class NewPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired("Choose a password."), Length(max=256)])
    confirm = PasswordField("The same password again",
                            validators=[DataRequired("Type the password a second time."),
                                        EqualTo("password", "The two passwords are not the same.")])
