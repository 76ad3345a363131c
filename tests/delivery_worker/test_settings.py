from __future__ import annotations

import pytest

from services.common.config import ConfigError, load
from services.delivery_worker.__main__ import worker_config
from services.delivery_worker.settings import DeliverySettings


@pytest.mark.unit
def test_defaults_follow_the_reference_retry_policy() -> None:
    settings = load(DeliverySettings, {})
    config = worker_config(settings)
    assert (config.backoff.base_s, config.backoff.cap_s, config.max_attempts) == (30.0, 7200.0, 5)
    assert config.wake_stream == "pulse:deliveries"
    assert settings.policy.allow == ()


@pytest.mark.unit
def test_bad_allow_list_and_a_lease_shorter_than_an_attempt_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            DeliverySettings,
            {"PULSE_DELIVERY_ALLOW_CIDRS": "10.0.0.0/8,nonsense", "PULSE_DELIVERY_LEASE_S": "5"},
        )
    text = str(caught.value)
    assert "PULSE_DELIVERY_ALLOW_CIDRS" in text and "nonsense" in text
    assert "PULSE_DELIVERY_LEASE_S" in text
    allowed = load(DeliverySettings, {"PULSE_DELIVERY_ALLOW_CIDRS": "127.0.0.0/8, ::1/128"})
    assert [str(n) for n in allowed.policy.allow] == ["127.0.0.0/8", "::1/128"]
