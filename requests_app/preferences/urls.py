from django.urls import path

from requests_app.preferences import views

app_name = "preferences"
urlpatterns = [
    path("", views.start, name="start"),
    path("code/", views.enter_code, name="code"),
    path("manage/", views.manage, name="manage"),
    path("link/<str:token>/", views.follow_link, name="link"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("sign-out/", views.sign_out, name="sign_out"),
]
