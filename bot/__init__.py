"""Text in, text out: the avatar's dialogue engine."""
