"""MQTT 5 over mutual TLS: one small client wrapper used by the edge daemon and the matcher."""
