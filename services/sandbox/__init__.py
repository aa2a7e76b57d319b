"""Sandbox: in-memory simulators of the national systems, one router per system, over real HTTP."""
