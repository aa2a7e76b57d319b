"""What the tests share besides fixtures: waiting for effects and a fast start of the embedded suite."""
