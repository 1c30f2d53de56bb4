from django.contrib.auth import views as auth_views
from django.urls import path

from requests_app.staff import (
    consent_views,
    desk,
    emails,
    intake,
    letters,
    queue,
    settings_views,
    views,
)
from requests_app.staff.access import login_view

app_name = "staff"
urlpatterns = [
    path("", queue.dashboard, name="dashboard"),
    path("login/", login_view, name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/staff/login/"), name="logout"),
    path("queue/", queue.queue, name="queue"),
    path("queue/assign/", queue.assign, name="assign"),
    path("intake/", intake.intake, name="intake"),
    path("emails/", emails.email_list, name="emails"),
    path("emails/<slug:notice>/", emails.email_edit, name="email_edit"),
    path("emails/<slug:notice>/default/", emails.email_restore_default,
         name="email_restore_default"),
    path("letters/", letters.letters, name="letters"),
    path("letters/<int:letter_id>/pdf/", letters.letter_pdf, name="letter_pdf"),
    path("letters/<int:letter_id>/posted/", letters.mark_posted, name="letter_posted"),
    path("tasks/", views.task_list, name="tasks"),
    path("settings/", settings_views.staff_settings, name="settings"),
    path("consent/violations/", consent_views.violations, name="violations"),
    path("tasks/<str:token>/", views.task_detail, name="task"),
    path("requests/<str:reference>/", desk.desk, name="desk"),
    path("requests/<str:reference>/progress/", desk.progress, name="progress"),
    path("requests/<str:reference>/claim/", queue.claim, name="claim"),
    path("requests/<str:reference>/notes/", desk.add_note, name="add_note"),
    path("requests/<str:reference>/period/", desk.widen_period, name="widen_period"),
    path("requests/<str:reference>/third-parties/<int:notice_id>/", desk.notice_answer,
         name="notice_answer"),
    path("requests/<str:reference>/email/", letters.add_email, name="add_email"),
    path("requests/<str:reference>/package-sent/", letters.package_sent, name="package_sent"),
    path("requests/<str:reference>/original/", desk.original, name="original"),
    path("requests/<str:reference>/permission/", desk.permission, name="permission"),
    path("requests/<str:reference>/verification/<slug:kind>/", desk.verification_file,
         name="verification_file"),
    path("requests/<str:reference>/step/<slug:name>/", desk.take_step, name="step"),
    path("requests/<str:reference>/sources/<int:run_id>/retry/", desk.retry_source,
         name="retry_source"),
    path("requests/<str:reference>/package/<str:kind>/", views.package_preview,
         name="package_preview"),
]
