"""Real local stand-ins for the outside world: an HTTP origin and generated clips."""
