"""Scheduling: locations, practitioners, work-hour types, schedules cut into slots, bookings."""
