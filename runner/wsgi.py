"""Public path of the WSGI entry: ``gunicorn runner.wsgi:application``.

The code lives in ``runner.web.wsgi``; this name is what a Procfile may hold.
"""

from runner.web.wsgi import application  # noqa: F401 (the public name)
