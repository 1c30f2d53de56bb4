"""Demo data for `make run`: privacy requests at every stage of the lifecycle,
filed and moved through the real use cases, so each has its audit trail.

Idempotent: requests are added only while fewer than --requests exist.
"""

import datetime
import random

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.utils import timezone
from faker import Faker

from requests_app.models import Actor, PrivacyRequest
from requests_app.rules import JURISDICTIONS, REQUEST_TYPES
from requests_app.services.lifecycle import (
    NewRequest,
    TransitionRefused,
    do_receive_request,
    do_transition,
)

# Paths through the lifecycle, each a list of (step, actor kind, inputs).
PATHS = [
    [],
    [("verify", "system", {})],
    [("verify", "system", {}), ("start_review", "system", {})],
    [("verify", "system", {}), ("start_review", "system", {}), ("approve", "staff", {})],
    [("verify", "system", {}), ("start_review", "system", {}),
     ("extend", "staff", {"notice": "Two of our older systems need a manual search."})],
    [("verify", "system", {}), ("start_review", "system", {}),
     ("deny", "staff", {"reason_code": "exemption",
                        "detail": "The records are kept for an open warranty claim."})],
    [("cancel", "consumer", {})],
]


class Command(BaseCommand):
    help = "Load demo privacy requests (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, default=40)
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, requests, seed, **options):
        existing = PrivacyRequest.objects.count()
        if existing >= requests:
            self.stdout.write(f"Demo data present ({existing} requests).")
            return
        fake = Faker("en_US")
        fake.seed_instance(seed + existing)
        rng = random.Random(seed + existing)
        manager, _ = User.objects.get_or_create(
            username="manager", defaults={"is_staff": True, "is_superuser": True})
        types = list(REQUEST_TYPES)
        places = list(JURISDICTIONS) + ["UNKNOWN"]
        for _ in range(requests - existing):
            received = timezone.now() - datetime.timedelta(
                days=rng.randint(0, 50), hours=rng.randint(0, 23))
            request = do_receive_request(
                NewRequest(
                    request_type=rng.choice(types),
                    jurisdiction=rng.choice(places),
                    channel=rng.choice(["web", "web", "web", "email", "post", "phone"]),
                    name=fake.name(),
                    email=fake.unique.email(),
                    phone=fake.phone_number() if rng.random() < 0.5 else "",
                    account_number=f"C-{rng.randint(100000, 999999)}" if rng.random() < 0.5 else "",
                    received_at=received,
                ),
                actor=Actor.consumer() if rng.random() < 0.7 else Actor.staff(manager),
            )
            for step, kind, inputs in rng.choice(PATHS):
                actor = {"system": Actor.system(), "consumer": Actor.consumer(),
                         "staff": Actor.staff(manager)}[kind]
                try:
                    do_transition(request.pk, step, actor=actor, **inputs)
                except TransitionRefused:
                    break  # e.g. an extension asked for after the due date: the path ends
        self.stdout.write(f"Demo data: {PrivacyRequest.objects.count()} requests.")
