"""The MQTT broker side: PKI for mutual TLS, Mosquitto configuration and ACLs, a managed
broker process for development, tests and the demo."""
