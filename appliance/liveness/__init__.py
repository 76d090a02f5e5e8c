"""Liveness (presentation-attack detection, ISO/IEC 30107): passive cues, motion, active
challenge, fused decision, signed evidence and alarm events; see docs/liveness.md."""
