from django.contrib import admin
from django.urls import include, path
from django_otp.admin import OTPAdminSite

from requests_app import views
from requests_app.preferences.third_party import confirm as third_party_confirm
from requests_app.api.callbacks import source_callback

# The admin needs a session verified with a TOTP code too (StaffAccessMiddleware
# sends everyone else to /staff/login/ first; this is the admin's own check).
admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("", include("requests_app.portal.urls")),
    path("preferences/", include("requests_app.preferences.urls")),
    path("third-parties/confirm/<str:token>/", third_party_confirm, name="third_party_confirm"),
    path("admin/", admin.site.urls),
    path("staff/", include("requests_app.staff.urls")),
    path("audit/", include("requests_app.audit.urls")),
    path("api/sources/callback/<str:token>/", source_callback, name="source_callback"),
]
