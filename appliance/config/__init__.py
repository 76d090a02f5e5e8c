"""Typed configuration: dataclasses filled from a TOML file and checked on load.

A wrong key or value fails at start with a message naming the key and the allowed values,
never later in the middle of a door pass.

Every key is a field of a frozen dataclass (``tables``) whose ``Annotated[..., Field(...)]``
carries its type, bounds and description; pydantic's ``TypeAdapter`` checks a file, an
``APPLIANCE__SECTION__KEY`` override or a command flag against them (``loading``) - the
mechanism that checks the protocol messages (``appliance.protocol.messages``). Values are
strict: ``"3"`` is not 3 and ``true`` is not 1 (an integer is accepted where a number is
expected). The dataclasses stay plain: building one in code (or ``dataclasses.replace``)
checks nothing. ``schema()`` is the described JSON schema of the whole file.
"""
from appliance.config.loading import (
    ENV_OVERRIDE_PREFIX,
    apply_env_overrides,
    check_service,
    load_config,
    registry_for,
    save_threshold,
    schema,
    threshold_for,
    validate,
    with_overrides,
)
from appliance.config.tables import (
    ALLOWED_DETECTORS,
    IDENTITY_RULE,
    LIVENESS_LEVELS,
    LOG_FORMATS,
    LOG_LEVELS,
    MATCHING_MODES,
    MIN_AUDIT_RETENTION_DAYS,
    RELAY_PINS,
    SERVICES,
    Config,
    ConsoleConfig,
    DeviceConfig,
    LivenessConfig,
    MatcherConfig,
    MatchingConfig,
    ModelsConfig,
    OfflineConfig,
    OpsConfig,
    QualityProfile,
    RuntimeConfig,
    SecurityConfig,
)

__all__ = [
    "ALLOWED_DETECTORS", "ENV_OVERRIDE_PREFIX", "IDENTITY_RULE", "LIVENESS_LEVELS", "LOG_FORMATS", "LOG_LEVELS",
    "MATCHING_MODES", "MIN_AUDIT_RETENTION_DAYS", "RELAY_PINS", "SERVICES", "Config", "ConsoleConfig", "DeviceConfig",
    "LivenessConfig", "MatcherConfig", "MatchingConfig", "ModelsConfig", "OfflineConfig", "OpsConfig",
    "QualityProfile", "RuntimeConfig", "SecurityConfig", "apply_env_overrides", "check_service", "load_config",
    "registry_for", "save_threshold", "schema", "threshold_for", "validate", "with_overrides",
]
