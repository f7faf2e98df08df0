from __future__ import annotations

from django.urls import path

from partners import views

app_name = "partners"

urlpatterns = [
    path("", views.home, name="home"),
    path("partners/<uuid:code>/", views.detail, name="detail"),
]
