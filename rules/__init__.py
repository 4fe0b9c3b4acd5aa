"""pgseal rules package."""
