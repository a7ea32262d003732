"""URL routes: the home page, the admin and the runner's status page (/status/, staff only).

/healthz is not here on purpose: the runner answers it in front of this WSGI app, so a
health check does not depend on Django or the database.
"""

from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    # Browsers ask every site for one; "no icon" without a 404 warning per page view.
    path("favicon.ico", views.no_icon),
    path("admin/", admin.site.urls),
    # /status/ and /status.json: staff login or RUNNER_STATUS_TOKEN (runner.status_view).
    path("", include("runner.status_view")),
]
