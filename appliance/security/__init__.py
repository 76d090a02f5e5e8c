"""Protection of biometric and personal data: keys, envelopes, masking, roles, consent, audit.

Everything here is shared by the edge daemon, the matcher and the admin CLI, so that each
rule (who may do what, what is masked, what is logged) lives in exactly one place.
"""
