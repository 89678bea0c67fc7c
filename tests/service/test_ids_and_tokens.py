"""Pure functions of the service: settings parsing, page tokens, device errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.jobstore import decode_page_token, encode_page_token, new_job_id
from service.settings import Settings
from worker.device import is_unrecoverable_device_error


def test_api_keys_map_keys_to_tenants():
    settings = Settings(api_keys="acme:k1, acme:k2,beta:k3")
    assert settings.api_keys == {"k1": "acme", "k2": "acme", "k3": "beta"}
    assert settings.auth_enabled
    assert not Settings(api_keys="").auth_enabled


@pytest.mark.parametrize("value", ["no-colon", "acme:", ":key", "bad tenant:k", "a:k,b:k"])
def test_malformed_api_keys_are_refused(value):
    with pytest.raises(ValidationError):
        Settings(api_keys=value)


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULT_TTL_SECONDS", "120")
    monkeypatch.setenv("GLASSBOX_DEVICE", "cuda:1")
    monkeypatch.setenv("GLASSBOX_PLUGINS", "a.b, c")
    settings = Settings()
    assert settings.result_ttl_seconds == 120 and settings.device == "cuda:1" and settings.plugins == ["a.b", "c"]
    monkeypatch.setenv("GLASSBOX_DEVICE", "gpu")
    with pytest.raises(ValidationError):
        Settings()


def test_page_tokens_round_trip_and_garbage_is_refused():
    job_id = new_job_id()
    assert decode_page_token(encode_page_token(job_id)) == job_id
    for garbage in ["", "abc", "e30", encode_page_token("x" * 25)]:
        with pytest.raises(ValueError):
            decode_page_token(garbage)


def test_sticky_cuda_errors_are_told_apart_from_ordinary_ones():
    assert is_unrecoverable_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_unrecoverable_device_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_unrecoverable_device_error(ValueError("CUDA error"))
