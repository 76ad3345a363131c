"""evaluator: device state (ONLINE/STALE/OFFLINE), alert rules, built-in alerts, alert lifecycle."""
