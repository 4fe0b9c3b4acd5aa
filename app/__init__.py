"""pgseal app package."""
