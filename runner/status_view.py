"""Public path of the status page: ``path("", include("runner.status_view"))``.

The code lives in ``runner.web.status_view``; this name is what a project's urls.py holds.
"""

from runner.web.status_view import urlpatterns  # noqa: F401 (what include() reads)
