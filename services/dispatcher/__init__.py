"""dispatcher: match alert events to each tenant's routes and create delivery jobs."""
