"""The edge daemon: capture, quality, liveness, template, decision, actuation at one door."""
