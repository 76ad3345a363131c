"""The ui container: admin API today; customer UI, operator UI and live hub in later issues."""
