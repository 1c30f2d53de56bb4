"""Edited email templates are parsed by Django's engine and checked node by node: a
sandboxed subset of tags and filters, variables only from the notices' context. The
bypasses of the old text pattern (a `%` in a tag's arguments) are refused like any
other forbidden tag."""

import pytest
from django.core.exceptions import ValidationError

from requests_app.models import EmailTemplateVersion
from requests_app.services.notices import templates as email_templates
from tests.conftest import staff_login

pytestmark = pytest.mark.django_db

REFUSED = [
    ("{% include 'staff/login.html' with x='%' %}", "include"),
    ("{% debug '%' %}", "debug"),
    ("{% debug %}", "debug"),
    ("{%include 'staff/login.html'%}", "include"),
    ("{% if 1 %}{% include \"emails/received/body.txt\" %}{% endif %}", "include"),
    ("{% for x in references %}{% debug %}{% endfor %}", "debug"),
    ("{% url 'staff:dashboard' %}", "url"),
    ("{% csrf_token %}", "csrf_token"),
    ("{% templatetag openblock %}", "templatetag"),
    ("{% filter upper %}x{% endfilter %}", "filter"),
    ("{% cycle 'a' 'b' %}", "cycle"),
    ("{% widthratio 1 2 3 %}", "widthratio"),
    ("{% lorem %}", "lorem"),
    ("{% load static %}", "only {% load i18n %}"),
    ("{% load static from static %}", "only {% load i18n %}"),
    ("{% extends 'staff/base.html' %}", "can only extend"),
    ("{% extends 'emails/base.html'|add:'' %}", "can only extend"),
    ("{{ settings.SECRET_KEY }}", "settings"),
    ("{{ csrf_token }}", "csrf_token"),
    ("{% if perms %}x{% endif %}", "perms"),
    ("{% if request and not user.is_staff %}x{% endif %}", "user"),
    ("{% for row in sql_rows %}{% endfor %}", "sql_rows"),
    ("{% with s=view %}{{ s }}{% endwith %}", "view"),
    ("{{ code|default:secret }}", "secret"),
    ("{% firstof a request %}", "“a”"),
    ("{% load i18n %}{% blocktranslate %}{{ token }}{% endblocktranslate %}", "token"),
    ("{% load i18n %}{% translate message_var %}", "message_var"),
    ("{{ identity.name|safe }}", "safe"),
    ("{{ request|pprint }}", "pprint"),
    ("{{ request|dictsort:'identity.email' }}", "dictsort"),
]

ALLOWED = [
    "{% for r in references %}{{ r|upper }}{% empty %}none{% endfor %}",
    "{% with n=identity.name %}{{ n|default:'you' }}{% endwith %}",
    ("{% load i18n %}{% translate 'Hello' as hi %}{{ hi }} {% blocktranslate with "
     "n=identity.name %}Dear {{ n }}{% endblocktranslate %}"),
    ("{% if code and not agent_name %}{{ code }}{% elif request.due_on %}"
     "{{ request.due_on|date:'F j' }}{% endif %}"),
    "{% autoescape off %}{{ status_url }}{% endautoescape %}{# a comment #}{% now 'Y' %}",
    "{% extends 'emails/base.html' %}{% block content %}{{ block.super }}{% endblock %}",
    "{% for x in references %}{{ forloop.counter }}{% endfor %}{% firstof agent_name 'you' %}",
]


def sources_with(part: str, body: str) -> dict:
    return {**email_templates.file_sources("received"), part: body}


@pytest.mark.parametrize("body,problem", REFUSED)
def test_a_forbidden_tag_filter_or_name_is_refused(body, problem):
    with pytest.raises(ValidationError) as refused:
        email_templates.compile_parts(sources_with("body_text", body))
    assert problem in " ".join(refused.value.messages)
    assert "Text" in " ".join(refused.value.messages)


@pytest.mark.parametrize("body", ALLOWED)
def test_the_allowed_subset_compiles_and_renders(body):
    sources = sources_with("body_html", body)
    email_templates.compile_parts(sources)
    email_templates.sample_render(sources)


def test_every_notices_own_files_pass_the_check():
    for notice in email_templates.notices():
        email_templates.compile_parts(email_templates.file_sources(notice))


@pytest.mark.parametrize("body", ["{% include 'staff/login.html' with x='%' %}",
                                  "{% debug '%' %}"])
def test_the_old_bypasses_are_refused_on_the_staff_page(body, client, alice):
    staff_login(client, alice)
    response = client.post("/staff/emails/received/",
                           {**sources_with("body_text", body), "save": "1"})
    assert response.status_code == 400
    assert "cannot be used in an email" in response.content.decode()
    assert not EmailTemplateVersion.objects.exists()
