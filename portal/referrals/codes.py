"""The fixed vocabularies of a referral, and the mapping of statuses to FHIR Task codes.

Minimum necessary: a referral is made of these codes plus a few encrypted personal fields.
There is deliberately no place for an injury narrative, an incident location or address,
suspects, a weapon, group affiliation or a police report number.
"""
from __future__ import annotations

AGE_BANDS = {"under_18": "Under 18", "18_24": "18–24", "25_34": "25–34", "35_plus": "35 and over"}

REASONS = {"gunshot_wound": "Gunshot wound", "stab_wound": "Stab wound", "assault": "Assault",
           "other_violent_injury": "Other violent injury"}

SERVICES = {
    "intensive_mentoring": "Intensive mentoring",
    "care_management": "Care management",
    "conflict_mediation": "Conflict mediation",
    "behavioral_health": "Behavioral health",
    "life_coaching": "Life coaching and skills",
    "education_housing_employment": "Education, housing and employment",
    "social_networks": "New social networks",
}

URGENCIES = {"routine": "Routine", "urgent": "Urgent (retaliation risk)"}

CONSENT_METHODS = {"verbal": "Verbal", "written": "Written", "electronic": "Electronic"}

# What a consent can release to a recipient. Codes (status, zone, age band, reason, services)
# travel with every referral; these categories are the personal parts.
DATA_CATEGORIES = {
    "contact": "Contact details (preferred name, phone, best time, language, contact-safety preferences)",
    "note": "The sender's short note",
}

DECLINE_REASONS = {"outside_service_area": "Outside our service area", "at_capacity": "At capacity",
                   "already_engaged": "Already engaged with another program", "not_eligible": "Not eligible",
                   "other": "Other"}

CANCEL_REASONS = {"sent_in_error": "Sent in error", "person_request": "The person asked to stop",
                  "duplicate": "Duplicate referral", "other": "Other"}

HOLD_REASONS = {"person_unavailable": "Person temporarily unavailable", "hospitalized": "Back in hospital",
                "safety_pause": "Paused for safety", "other": "Other"}

CONTACT_OUTCOMES = {"reached": "Reached", "no_answer": "No answer", "left_message": "Left a message",
                    "wrong_number": "Wrong number"}

COMPLETION_OUTCOMES = {"engaged": "Engaged in services", "unable_to_reach": "Unable to reach",
                       "declined_services": "Declined services", "moved_away": "Moved away", "other": "Other"}

STATUSES = {"sent": "Sent", "accepted": "Accepted", "declined": "Declined", "in_progress": "In progress",
            "on_hold": "On hold", "completed": "Completed", "cancelled": "Cancelled", "revoked": "Consent ended"}

OPEN_STATUSES = ("sent", "accepted", "in_progress", "on_hold")
CLOSED_STATUSES = ("declined", "completed", "cancelled", "revoked")

# Closed-loop referral status as an HL7 FHIR Task (Gravity SDOH Clinical Care): the one place a
# future FHIR interface reads. `revoked` has no Task equivalent; consent ending cancels the Task.
FHIR_TASK_STATUS = {
    "sent": "requested",
    "accepted": "accepted",
    "declined": "rejected",
    "in_progress": "in-progress",
    "on_hold": "on-hold",
    "completed": "completed",
    "cancelled": "cancelled",
    "revoked": "cancelled",
}

# Organization kinds that take part in the exchange of referrals; police and the city never do.
EXCHANGE_KINDS = ("hospital_program", "cvi_team", "service_provider")

NOTE_MAX = 280
