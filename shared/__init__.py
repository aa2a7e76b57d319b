"""Mechanics shared by every service: settings, database, events, bus, outbox, auth, errors, logging.

Nothing in this package knows about a particular service's domain.
"""
