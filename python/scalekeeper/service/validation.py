"""Input checks, with messages that say what a valid value looks like."""

from __future__ import annotations

import re

from scalekeeper.errors import Code, ServiceError

# Kubernetes' own rules: namespaces are DNS-1123 labels, Deployment names DNS-1123 subdomains.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _invalid(message: str) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, message)


def _shown(value: str) -> str:
    return repr(value[:64] + ("..." if len(value) > 64 else ""))


def namespace(value: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise _invalid("namespace is required")
        return value
    if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        raise _invalid(
            f"namespace {_shown(value)} is not a valid DNS-1123 label "
            "(at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    return value


def deployment_name(value: str) -> str:
    if not value:
        raise _invalid("name is required")
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise _invalid(
            f"name {_shown(value)} is not a valid DNS-1123 subdomain "
            "(at most 253 lowercase letters, digits, '-' and '.')"
        )
    return value


def replicas(value: int, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise _invalid(f"replicas must be between 0 and {maximum}, got {value}")
    return value


def page_size(value: int) -> int:
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise _invalid(f"page_size must be between 1 and {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE}), got {value}")
    return value
