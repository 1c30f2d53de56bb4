"""Tamper evidence that survives the database's own administrator (issue 14, item 7).

Each attack is made as the role that owns the tables could make it (triggers
disabled, rows rewritten, hashes recomputed), and each must be caught by
`verify_audit_log`: through the keyed chain (a key the database does not hold) or
the signed checkpoints kept outside the database."""

import datetime
import hashlib
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from requests_app.models import Actor, AuditEvent, State
from requests_app.models.audit import HMAC_SHA256, PLAIN_SHA256
from requests_app.services.audit import checkpoints
from requests_app.services.audit.chain import verify_chain, write_checkpoint
from requests_app.services.audit.events import record_event
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import file_request

pytestmark = pytest.mark.django_db  # on PostgreSQL (make test): the attacks are on its triggers

TABLE = "requests_app_auditevent"


def some_history(alice):
    request = file_request(state=State.IN_REVIEW)
    do_transition(request.pk, "approve", actor=Actor.staff(alice))
    return request


def as_owner(*statements):
    """What the role that owns the table can do: switch its triggers off, act, and
    switch them on again."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending checks, or no ALTER
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")


def rechain_plainly(from_id: int, edit=None):
    """The attacker's best effort without the key: from event `from_id` on, apply
    `edit`, then recompute every hash as plain SHA-256, linked as a chain."""
    before = AuditEvent.objects.filter(id__lt=from_id).order_by("-id").first()
    previous = before.hash if before else ""
    statements = []
    for event in AuditEvent.objects.filter(id__gte=from_id).order_by("id"):
        if edit:
            edit(event)
        event.prev_hash, event.chain_version = previous, PLAIN_SHA256
        event.hash = event.compute_hash(event.request.reference if event.request else "")
        statements.append((f"UPDATE {TABLE} SET reason = %s, prev_hash = %s, hash = %s, "
                           "chain_version = 0 WHERE id = %s",
                           [event.reason, event.prev_hash, event.hash, event.pk]))
        previous = event.hash
    as_owner(*statements)
    return previous


def caught(match: str):
    report = verify_chain()
    assert not report.intact
    assert match in report.problem, report.problem
    with pytest.raises(CommandError, match="broken"):
        call_command("verify_audit_log")
    return report


def test_truncate_is_refused_also_when_it_cascades_from_the_requests(alice):
    some_history(alice)
    for sql in (f"TRUNCATE {TABLE} CASCADE", "TRUNCATE requests_app_privacyrequest CASCADE",
                "TRUNCATE requests_app_consentrecord CASCADE"):
        with pytest.raises(Exception, match="append-only: TRUNCATE refused"), \
                transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(sql)
    assert AuditEvent.objects.count() >= 3


def test_a_truncated_trail_is_caught_by_the_checkpoints(alice, checkpoint_dir):
    some_history(alice)
    write_checkpoint()
    as_owner((f"TRUNCATE {TABLE} CASCADE", None))
    assert AuditEvent.objects.count() == 0
    caught("the chain is empty")


def test_deleting_the_newest_events_is_caught(alice, checkpoint_dir):
    some_history(alice)
    newest = write_checkpoint()
    last_two = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True)[:2])
    as_owner((f"DELETE FROM {TABLE} WHERE id = ANY(%s)", [last_two]))
    report = caught("removed from its end")
    assert f"vouches for event {newest.seq}" in report.problem
    assert report.intact is False and report.broken_at is None


def test_deleting_a_middle_event_is_caught_even_when_the_rest_is_rechained(
        alice, checkpoint_dir):
    some_history(alice)
    write_checkpoint()
    events = list(AuditEvent.objects.order_by("id"))
    middle = events[len(events) // 2]
    as_owner((f"DELETE FROM {TABLE} WHERE id = %s", [middle.pk]))
    after = events[events.index(middle) + 1]
    assert caught("removed, inserted or reordered").broken_at.pk == after.pk
    rechain_plainly(after.pk)  # and the links mended, without the key
    caught("plain SHA-256 hash after keyed events")


def test_editing_a_row_and_recomputing_the_chain_with_plain_sha256_is_caught(alice):
    """No checkpoint needed: a plain hash after keyed ones is a forgery."""
    some_history(alice)
    target = AuditEvent.objects.order_by("id")[2]

    def edit(event):
        if event.pk == target.pk:
            event.reason = "nothing to see"

    rechain_plainly(target.pk, edit)
    assert caught("plain SHA-256 hash after keyed events").broken_at.pk == target.pk


def test_recomputing_the_whole_chain_with_plain_sha256_is_caught_by_the_checkpoints(
        alice, checkpoint_dir):
    """Rewritten from its first event, the chain is self-consistent again (it looks
    like events from before the key existed): the checkpoints disagree."""
    some_history(alice)
    write_checkpoint()
    first = AuditEvent.objects.order_by("id").first()

    def edit(event):
        if event.pk == first.pk:
            event.reason = "nothing to see"

    rechain_plainly(first.pk, edit)
    caught("differs from the checkpoint")


def test_disabling_the_trigger_as_owner_and_editing_is_caught(alice, checkpoint_dir):
    some_history(alice)
    write_checkpoint()
    target = AuditEvent.objects.order_by("id")[1]
    # Even recomputing the hash in the keyed form is no use without the key.
    target.reason = "nothing to see"
    forged = hashlib.sha256(target.canonical(target.request.reference)).hexdigest()
    as_owner((f"UPDATE {TABLE} SET reason = %s, hash = %s WHERE id = %s",
              ["nothing to see", forged, target.pk]))
    assert caught("it was altered").broken_at.pk == target.pk


def test_replacing_the_recorded_head_is_caught(alice, checkpoint_dir):
    """The attacker rewrites the chain and records its new head inside it, as the
    nightly task would: the head that counts is the signed one outside."""
    some_history(alice)
    write_checkpoint()
    first = AuditEvent.objects.order_by("id").first()
    new_head = rechain_plainly(first.pk, lambda e: setattr(e, "reason", e.reason + " "))
    record_event("audit.chain_head", actor=Actor.system(),
                 data={"head": new_head, "events": AuditEvent.objects.count(), "intact": True})
    caught("differs from the checkpoint")


def test_a_forged_checkpoint_line_is_caught(alice, checkpoint_dir, settings):
    some_history(alice)
    mark = write_checkpoint()
    path = checkpoints.day_file(datetime.date.fromisoformat(mark.at[:10]))
    line = json.loads(path.read_text())
    line["head"] = "0" * 64
    path.write_text(json.dumps(line) + "\n")
    caught("signature does not verify")
    # Nor can a checkpoint be signed with a key of one's own.
    installed = settings.AUDIT_CHECKPOINT_KEY
    settings.AUDIT_CHECKPOINT_KEY = "B" * 43 + "="
    path.unlink()
    checkpoints.append(checkpoints.sign(mark.seq, mark.head, mark.count,
                                        datetime.datetime.now(datetime.timezone.utc)))
    settings.AUDIT_CHECKPOINT_KEY = installed
    caught("signed by another key")


def test_the_chain_is_keyed_with_a_key_the_database_does_not_hold(alice, settings):
    some_history(alice)
    events = list(AuditEvent.objects.order_by("id"))
    assert {e.chain_version for e in events} == {HMAC_SHA256}
    for e in events:  # neither plain SHA-256 of the content
        assert e.hash != hashlib.sha256(e.canonical(
            e.request.reference if e.request else "")).hexdigest()
    assert verify_chain().intact
    settings.AUDIT_CHAIN_KEY = "another key"
    assert "it was altered" in verify_chain().problem


def test_events_hashed_before_the_key_existed_keep_verifying(request, checkpoint_dir):
    """Events from before migration 0013 carry plain SHA-256 (chain_version 0); the
    keyed chain goes on from their head."""
    as_owner((f"DELETE FROM {TABLE}", None))  # a trail from before the key, from its start
    previous = ""
    for n in range(3):
        old = AuditEvent(actor_kind="system", actor_label="system", action=f"legacy.{n}",
                         prev_hash=previous, chain_version=PLAIN_SHA256)
        old.hash = old.compute_hash("")
        old.save()
        previous = old.hash
    some_history(request.getfixturevalue("alice"))
    report = verify_chain()
    assert report.intact and report.events == AuditEvent.objects.count()
    assert AuditEvent.objects.filter(chain_version=PLAIN_SHA256).count() == 3
    assert write_checkpoint().count == report.events
    assert verify_chain().checkpoints == 1


def test_checkpoints_are_appended_for_new_events_only_and_verify(alice, checkpoint_dir):
    some_history(alice)
    first = write_checkpoint()
    assert first.seq == AuditEvent.objects.order_by("-id").first().pk
    assert first.count == AuditEvent.objects.count()
    assert write_checkpoint().sig == first.sig  # nothing new: no new line
    record_event("test.more", actor=Actor.system())
    second = write_checkpoint()
    assert second.seq > first.seq and second.count == first.count + 1
    lines = checkpoints.day_file(datetime.date.fromisoformat(second.at[:10])).read_text()
    assert lines.count("\n") == 2
    assert [(c.seq, c.head, c.sig) for c in checkpoints.read_all()] == [
        (c.seq, c.head, c.sig) for c in (first, second)]
    report = verify_chain()
    assert report.intact and report.checkpoints == 2 and report.unvouched == 0


def test_cutting_the_tail_and_writing_on_is_caught(alice, checkpoint_dir):
    """New events appended after the cut chain to what is left, so the chain itself
    looks whole: the checkpoint's event is missing."""
    some_history(alice)
    newest = write_checkpoint()
    as_owner((f"DELETE FROM {TABLE} WHERE id = %s", [newest.seq]))
    record_event("test.more", actor=Actor.system())
    assert write_checkpoint() is None  # nor is the cut signed over
    caught(f"vouches for event {newest.seq} with {newest.count} events, but the chain "
           "has no such event")


def test_an_empty_trail_gets_no_checkpoint(checkpoint_dir):
    as_owner((f"DELETE FROM {TABLE}", None))
    assert write_checkpoint() is None and checkpoints.latest() is None
    assert verify_chain().intact


def test_a_broken_chain_gets_no_checkpoint(alice, checkpoint_dir):
    some_history(alice)
    target = AuditEvent.objects.order_by("id")[1]
    as_owner((f"UPDATE {TABLE} SET reason = 'x' WHERE id = %s", [target.pk]))
    assert write_checkpoint() is None
    assert checkpoints.latest() is None


def test_the_command_reports_the_checkpoints(alice, checkpoint_dir, capsys):
    some_history(alice)
    call_command("verify_audit_log")
    assert "No signed checkpoint yet" in capsys.readouterr().out
    write_checkpoint()
    record_event("test.more", actor=Actor.system())
    call_command("verify_audit_log")
    out = capsys.readouterr().out
    assert "intact" in out and "1 signed checkpoints agree" in out
    assert "1 events since are not yet in a checkpoint" in out


def test_the_day_s_checkpoints_are_emailed_to_the_auditors_each_night(
        alice, charlie, checkpoint_dir, mailoutbox, settings):
    settings.AUDIT_CHECKPOINT_EMAILS = ["outside-auditor@example.org"]
    some_history(alice)
    head = AuditEvent.objects.order_by("-id").first()
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    checkpoints.append(checkpoints.sign(head.pk, head.hash, AuditEvent.objects.count(),
                                        yesterday))
    from requests_app.services.audit.tasks import note_audit_chain_head

    note_audit_chain_head.delay()
    event = AuditEvent.objects.filter(action="audit.chain_head").get()
    assert event.data["intact"] and event.data["checkpoints"] == 1
    [message] = [m for m in mailoutbox if m.subject.startswith("Audit trail checkpoints")]
    assert sorted(message.to) == sorted([charlie.email, "outside-auditor@example.org"])
    assert "intact" in message.body and checkpoints.public_key() in message.body
    [(name, content, _)] = message.attachments
    assert name == f"audit-checkpoints-{yesterday.date().isoformat()}.jsonl"
    assert checkpoints.parse(content.decode().strip()).head == head.hash


def test_the_event_log_export_carries_the_newest_checkpoint(alice, charlie, checkpoint_dir,
                                                             client):
    import io
    import zipfile

    from tests.conftest import staff_login

    some_history(alice)
    mark = write_checkpoint()
    staff_login(client, charlie)
    assert mark.head in client.get("/audit/").content.decode()
    response = client.get("/audit/events/?format=csv")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    stamp = manifest["chain_checkpoint"]
    assert (stamp["seq"], stamp["head"], stamp["sig"]) == (mark.seq, mark.head, mark.sig)
    assert stamp["public_key"] == checkpoints.public_key()
    assert f"{mark.seq},".encode() in archive.read(manifest["file"])
