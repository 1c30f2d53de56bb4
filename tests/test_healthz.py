import pytest

from privacyportal.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_healthy_when_database_and_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.fixture
def broker_down():
    original = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    yield
    celery_app.conf.broker_write_url = original


def test_503_naming_the_broker_when_it_is_unreachable(client, broker_down):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing: broker", "database": "ok", "broker": "unreachable"}


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
