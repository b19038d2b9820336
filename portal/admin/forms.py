from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectChoice, EmailField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from portal.models import ORG_KINDS, ROLES

KIND_LABELS = {
    "hospital_program": "Hospital violence-intervention program",
    "cvi_team": "CVI team",
    "service_provider": "Service provider",
    "city_office": "City office",
    "police_partner": "Police partner (aggregate counts only)",
}
ROLE_LABELS = {"staff": "Staff", "supervisor": "Supervisor", "org_admin": "Organization admin"}


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ZoneForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=16)])
    label = StringField("Label", validators=[DataRequired(), Length(max=80)])


class OrganizationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    kind = SelectField("Kind", choices=[SelectChoice(k, KIND_LABELS[k]) for k in ORG_KINDS])
    zones = MultiCheckboxField("Zones served", choices=[], validate_choice=False)
    admin_email = EmailField("First administrator's e-mail", validators=[DataRequired(), Length(max=254)])
    admin_name = StringField("First administrator's name", validators=[DataRequired(), Length(max=120)])


class UserForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    display_name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    role = SelectField("Role", choices=[SelectChoice(r, ROLE_LABELS[r]) for r in ROLES])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(r, ROLE_LABELS[r]) for r in ROLES])


class ActiveForm(FlaskForm):
    active = BooleanField("Active")
