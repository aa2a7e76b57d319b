"""Integration: the suite's adapters to the national systems (P1/gabinet, CeR, eZWM), one module each.

Each adapter talks to its system over HTTP only, so the sandbox and the real system differ by base URL.
"""
