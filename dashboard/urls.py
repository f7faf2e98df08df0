"""The staff dashboard's URLs. The invitation and re-consent-link pages keep the paths they were published under."""

from __future__ import annotations

from django.urls import path

from dashboard import actions, views, webhooks

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="home"),
    path("partners/", views.partner_list, name="list"),
    path("partners.csv", views.partner_list_csv, name="list_csv"),
    path("partners/bulk", actions.bulk, name="bulk"),
    path("customers/repair-drifted", actions.repair_drifted, name="repair_drifted"),
    path("partners/<uuid:code>/", views.detail, name="detail"),
    path("partners/<uuid:code>/customers.csv", views.partner_customers_csv, name="customers_csv"),
    path("partners/<uuid:code>/do/<slug:action>", actions.partner_action, name="action"),
    path("partners/<uuid:code>/customers/<uuid:tenant>/<slug:action>", actions.customer_action, name="customer_action"),
    path("partners/<uuid:code>/operations/<uuid:operation>", views.operation_status, name="operation"),
    path("operations/bulk/<uuid:bulk>/", views.bulk_operations, name="bulk_operations"),
    path("audit/", views.audit_log, name="audit"),
    path("audit.csv", views.audit_log_csv, name="audit_csv"),
    path("staff/", views.staff_accounts, name="staff"),
    path("settings/", views.settings_page, name="settings"),
    path("webhooks/", webhooks.webhook_list, name="webhooks"),
    path("webhooks/<uuid:code>/", webhooks.webhook_detail, name="webhook"),
    path("webhooks/<uuid:code>/rotate", webhooks.webhook_rotate, name="webhook_rotate"),
    path("webhooks/deliveries/<uuid:code>/redeliver", webhooks.webhook_redeliver, name="webhook_redeliver"),
    path("settings/check", views.settings_check, name="settings_check"),
    path("settings/app-key-rotation", views.app_key_rotate, name="app_key_rotate"),
    path("js/<slug:name>.js", views.page_script, name="page_script"),
    path("consent/staff/invite", actions.invite, name="invite"),
    path("consent/staff/partners/<uuid:code>/reconsent-link", actions.reconsent_link, name="reconsent_link"),
]
