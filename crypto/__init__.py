"""pgseal crypto package."""
