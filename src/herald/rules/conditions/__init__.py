"""Rule conditions in CEL, evaluated for every event: compiled, weighed before they run,
and explained when they fail."""
