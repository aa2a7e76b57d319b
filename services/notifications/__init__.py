"""Notifications service: e-mail and SMS to patients and facilities, once per event."""
