"""The web tier: Tornado handlers over the Store."""
