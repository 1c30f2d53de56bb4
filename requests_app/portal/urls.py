from django.urls import path

from requests_app.portal import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("request/", views.request_form, name="request"),
    path("request/sent/", views.sent, name="sent"),
    path("verify/", views.verify, name="verify"),
    path("status/", views.status, name="status"),
    path("status/code/", views.status_code, name="status_code"),
    path("status/sign-out/", views.sign_out, name="sign_out"),
    path("status/<str:reference>/", views.status_detail, name="status_detail"),
    path("status/<str:reference>/cancel/", views.cancel, name="cancel"),
    path("status/<str:reference>/appeal/", views.appeal, name="appeal"),
    path("download/<str:token>/", views.download, name="download"),
]
