"""The door's screen: the structured screen model every part of the door publishes
(``screen``), the camera preview kept in memory (``preview``) and the page served on
127.0.0.1 for Chromium in kiosk mode (``server``; docs/kiosk.md)."""
