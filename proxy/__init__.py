"""pgseal proxy package."""
