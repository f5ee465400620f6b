"""Virtual meters on bumble, and a bleak backend that reaches them (placeholder docstring)."""
