"""Biometric performance evaluation (ISO/IEC 19795-1 verification and identification)."""
