"""URL routes: the home page and the admin.

/healthz is not here on purpose: the runner answers it in front of this WSGI app, so a
health check does not depend on Django or the database.
"""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
]
