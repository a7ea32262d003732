"""Django's error reports -- the DEBUG page, the admins' e-mails -- without Redis passwords.

Django's ``SafeExceptionReporterFilter`` hides a setting by its *name* (KEY, SECRET, PASS,
TOKEN, API, SIGNATURE): ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND`` and the cache's
``LOCATION`` are shown in full, and with ``DEBUG=true`` the page showed the Redis password
three times. This filter also masks every URL value that carries credentials, wherever it
sits (nested in ``CACHES`` too), with the runner's own masking (``runner.config.redis``),
which holds for passwords that do not parse. ``runner_settings`` makes it Django's default
(``DEFAULT_EXCEPTION_REPORTER_FILTER``).
"""

from __future__ import annotations

from django.views.debug import SafeExceptionReporterFilter

from runner.config.redis import mask_url


class CredentialSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus URLs with a user or password masked (``scheme://user:***@``)."""

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str) and "://" in value and "@" in value:
            return mask_url(value)
        return value
