"""delivery_worker: deliver jobs (webhook, MQTT, ...) with retries, backoff and the SSRF guard."""
