"""Evaluation harness, never imported by the runtime: biometric performance (ISO/IEC 19795-1
verification and identification), presentation-attack detection (ISO/IEC 30107-3, ``pad``),
the SYNTHETIC attack generator (``synthetic``) and the liveness fusion fit (``pad_calibration``)."""
