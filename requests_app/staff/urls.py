from django.contrib.auth import views as auth_views
from django.urls import path

from requests_app.staff import consent_views, views

app_name = "staff"
urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="staff/login.html"),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/staff/login/"), name="logout"),
    path("tasks/", views.task_list, name="tasks"),
    path("consent/violations/", consent_views.violations, name="violations"),
    path("tasks/<str:token>/", views.task_detail, name="task"),
    path("requests/<str:reference>/package/<str:kind>/", views.package_preview,
         name="package_preview"),
]
