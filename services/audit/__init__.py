"""The access audit: who read or changed which patient's data, when (append-only)."""
