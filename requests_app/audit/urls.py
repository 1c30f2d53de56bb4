from django.urls import path

from requests_app.audit import views

app_name = "audit"
urlpatterns = [
    path("", views.home, name="home"),
    path("requests/", views.export_requests, name="requests"),
    path("events/", views.export_events, name="events"),
    path("metrics/<int:year>/", views.metrics, name="metrics"),
    path("opt-outs/<int:year>/", views.opt_out_report, name="opt_outs"),
]
