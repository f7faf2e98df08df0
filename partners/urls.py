from __future__ import annotations

from django.urls import path

from consent import staff_views
from partners import views

app_name = "partners"

urlpatterns = [
    path("", views.overview, name="home"),
    path("partners/", views.partner_list, name="list"),
    path("partners/bulk", staff_views.bulk, name="bulk"),
    path("partners/<uuid:code>/", views.detail, name="detail"),
    path("partners/<uuid:code>/do/<slug:action>", staff_views.partner_action, name="action"),
    path("partners/<uuid:code>/operations/<uuid:operation>", views.operation_status, name="operation"),
    path("audit/", views.audit_log, name="audit"),
    path("staff/", views.staff_accounts, name="staff"),
    path("settings/", views.settings_page, name="settings"),
]
