"""Public path of the settings helper: ``from runner.django import runner_settings``.

The code lives in ``runner.web.django_settings``; this name is what projects write.
"""

from runner.web.django_settings import runner_settings  # noqa: F401 (the public name)
