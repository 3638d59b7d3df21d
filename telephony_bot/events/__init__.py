"""Call events and control: an in-process bus that never blocks the call path, and its sinks
(MQTT, call records, metrics, the admin API)."""
