"""The review queue and the dashboard.

The queue lists open requests by their current due date (the partial index
queue_open_by_due serves it), with filters, a search by reference or email, and
claim / assign / bulk assign. Its cost does not grow with the number of
requests: a fixed number of queries, each bounded (a page of rows, and a count
that stops at COUNT_CAP), measured in bench/bench_queue.py.
"""

import datetime
import re

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.db.models.functions import Coalesce, Lower, TruncWeek
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_POST

from requests_app.models import DataSource, PrivacyRequest, SourceRun
from requests_app.models.privacy_request import OPEN_STATES, State, TransitionInputError
from requests_app.rules import jurisdiction_choices, request_type_choices
from requests_app.services.requests.lifecycle import TransitionRefused
from requests_app.services.requests.desk import assignable_users, do_assign, do_claim
from requests_app.staff.access import staff_required
from requests_app.staff.consent_views import violations_panel

VIEW = "requests_app.view_privacyrequest"
PAGE_SIZE = 25
COUNT_CAP = 1000          # the queue counts matches up to here, then says "more than"
SOON_DAYS = 5             # due within this many days (today included): shown in amber
WEEK_DAYS = 7             # "due this week": due from today to today + 7 days

_REFERENCE = re.compile(r"^(?:PP)?([0-9A-HJKMNP-TV-Z]{16})$")


def current_due():
    """The due date that counts (PrivacyRequest.current_due_on): the appeal's decision
    date once appealed, else the extended one if the request was extended. The same
    expression as the index queue_open_by_due."""
    return Coalesce("appeal_due_on", "extended_due_on", "due_on")


def normalise_reference(text: str) -> str | None:
    """PP-7K2D-9QXM-4TRB-H1VC from any spacing, dashes or case; None if it is not one."""
    compact = re.sub(r"[\s\-]", "", text.upper())
    match = _REFERENCE.match(compact)
    if not match:
        return None
    chars = match.group(1)
    return "PP-" + "-".join(chars[i:i + 4] for i in range(0, 16, 4))


class QueueFilter(forms.Form):
    DUE = [("", _lazy("Any time")), ("overdue", _lazy("Overdue")),
           ("week", _lazy("Due this week"))]
    q = forms.CharField(label=_lazy("Reference or email"), required=False, max_length=254)
    state = forms.ChoiceField(label=_lazy("State"), required=False)
    type = forms.ChoiceField(label=_lazy("Type"), required=False)
    jurisdiction = forms.ChoiceField(label=_lazy("Jurisdiction"), required=False)
    assignee = forms.ChoiceField(label=_lazy("Assignee"), required=False)
    due = forms.ChoiceField(label=_lazy("Due"), required=False, choices=DUE)
    page = forms.IntegerField(required=False, min_value=1, max_value=COUNT_CAP // PAGE_SIZE,
                              widget=forms.HiddenInput)

    def __init__(self, *args, staff, **kwargs):
        super().__init__(*args, **kwargs)
        every = [("", _("All"))]
        self.fields["state"].choices = every + [(s.value, s.label) for s in State
                                                if s.value in OPEN_STATES]
        self.fields["type"].choices = every + list(request_type_choices())
        self.fields["jurisdiction"].choices = every + list(jurisdiction_choices())
        self.fields["assignee"].choices = every + [("me", _("Me")), ("none", _("Nobody"))] + [
            (str(user.pk), user.get_username()) for user in staff]


def _queue(data: dict, user, today):
    rows = PrivacyRequest.objects.select_related("assignee")
    term = (data.get("q") or "").strip()
    if term:
        # A search looks at every request, open or not, by exact reference or email.
        reference = normalise_reference(term)
        if reference:
            rows = rows.filter(reference=reference)
        else:
            rows = rows.alias(email_lower=Lower("identity__email")).filter(
                email_lower=term.lower())
    elif not data.get("state"):
        rows = rows.filter(state__in=OPEN_STATES)
    if data.get("state"):
        # One of the open states (the form allows no other). Not combined with the
        # list of open states: PostgreSQL would take the two as independent and
        # underestimate the rows tenfold, and then sort them all instead of reading
        # the index queue_state_by_due in order.
        rows = rows.filter(state=data["state"])
    if data.get("type"):
        rows = rows.filter(request_type=data["type"])
    if data.get("jurisdiction"):
        rows = rows.filter(jurisdiction=data["jurisdiction"])
    assignee = data.get("assignee")
    if assignee == "me":
        rows = rows.filter(assignee=user)
    elif assignee == "none":
        rows = rows.filter(assignee=None)
    elif assignee:
        rows = rows.filter(assignee_id=int(assignee))
    rows = rows.alias(current_due=current_due())
    if data.get("due") == "overdue":
        rows = rows.filter(current_due__lt=today)
    elif data.get("due") == "week":
        rows = rows.filter(current_due__gte=today,
                           current_due__lte=today + datetime.timedelta(days=WEEK_DAYS))
    return rows.order_by(current_due().asc(), "id")


@staff_required(VIEW)
def queue(request):
    staff = list(assignable_users())
    params = request.GET.copy()
    if "mine" in params:  # "my requests"
        params["assignee"] = "me"
    form = QueueFilter(params, staff=staff)
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    today = timezone.localdate()
    rows = _queue(data, request.user, today)
    page = data.get("page") or 1
    start = (page - 1) * PAGE_SIZE
    found = rows[: COUNT_CAP + 1].count()
    page_rows = list(rows[start:start + PAGE_SIZE])
    for row in page_rows:
        due = row.current_due_on
        row.days_left = (due - today).days
        row.overdue_days = -row.days_left
        row.urgency = ("overdue" if row.days_left < 0
                       else "soon" if row.days_left <= SOON_DAYS else "")
        row.ack_due = (row.acknowledge_by if row.acknowledged_at is None
                       and row.state in OPEN_STATES else None)
    query = params.copy()
    query.pop("page", None)
    return render(request, "staff/queue.html", {
        "form": form, "rows": page_rows, "found": min(found, COUNT_CAP),
        "more": found > COUNT_CAP, "page": page,
        "has_next": start + PAGE_SIZE < min(found, COUNT_CAP), "has_previous": page > 1,
        "query": query.urlencode(), "staff": staff, "today": today,
        "may_assign": request.user.has_perm("requests_app.assign_request"),
        "may_work": request.user.has_perm("requests_app.work_request"),
    })


def _back_to_queue(request):
    target = request.POST.get("back") or ""
    return redirect(target if target.startswith("/staff/") else "staff:queue")


@require_POST
@staff_required(VIEW, "requests_app.work_request")
def claim(request, reference):
    found = PrivacyRequest.objects.filter(reference=reference).values_list("pk", flat=True)
    try:
        if not found:
            raise TransitionRefused(_("There is no such request."))
        do_claim(found[0], by=request.user)
        messages.success(request, _("%(reference)s is yours now.") % {"reference": reference})
    except (TransitionRefused, TransitionInputError) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    return _back_to_queue(request)


@require_POST
@staff_required(VIEW, "requests_app.work_request")
def assign(request):
    """Assign one or many requests (the queue's check boxes) to someone, or to nobody."""
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()][:PAGE_SIZE * 4]
    choice = request.POST.get("assignee", "")
    if not ids:
        messages.error(request, _("Tick the requests to assign first."))
        return _back_to_queue(request)
    User = get_user_model()
    if choice == "me":
        assignee = request.user
    elif choice in ("", "none"):
        assignee = None
    else:
        assignee = User.objects.filter(pk=int(choice)).first() if choice.isdigit() else None
        if assignee is None:
            messages.error(request, _("Choose whom to assign them to."))
            return _back_to_queue(request)
    if assignee != request.user and not request.user.has_perm("requests_app.assign_request"):
        raise PermissionDenied
    try:
        count = do_assign(ids, assignee, by=request.user)
        messages.success(request, _("%(count)s request(s) assigned.") % {"count": count})
    except (TransitionRefused, TransitionInputError) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    return _back_to_queue(request)


# --- dashboard ------------------------------------------------------------------------

CHART_WEEKS = 12


def weekly_counts(today) -> list[dict]:
    """Requests received and closed (answered, cancelled or expired) per week, for
    the last CHART_WEEKS weeks, oldest first."""
    monday = today - datetime.timedelta(days=today.weekday())
    first = monday - datetime.timedelta(weeks=CHART_WEEKS - 1)
    start = timezone.make_aware(datetime.datetime.combine(first, datetime.time.min))
    received = dict(PrivacyRequest.objects.filter(received_at__gte=start)
                    .annotate(week=TruncWeek("received_at")).values("week")
                    .annotate(n=Count("id")).values_list("week", "n"))
    ended = Coalesce("responded_at", "closed_at")
    closed = dict(PrivacyRequest.objects.alias(ended=ended).filter(ended__gte=start)
                  .annotate(week=TruncWeek(ended)).values("week")
                  .annotate(n=Count("id")).values_list("week", "n"))

    def by_day(counts):
        return {timezone.localdate(k) if isinstance(k, datetime.datetime) else k: v
                for k, v in counts.items()}

    received, closed = by_day(received), by_day(closed)
    weeks = []
    for i in range(CHART_WEEKS):
        week = first + datetime.timedelta(weeks=i)
        weeks.append({"week": week, "received": received.get(week, 0),
                      "closed": closed.get(week, 0)})
    top = max([1] + [max(w["received"], w["closed"]) for w in weeks])
    for i, w in enumerate(weeks):
        w["x"], w["x2"] = 40 + i * 50, 60 + i * 50
        w["received_h"] = round(120 * w["received"] / top)
        w["closed_h"] = round(120 * w["closed"] / top)
        w["received_y"], w["closed_y"] = 140 - w["received_h"], 140 - w["closed_h"]
    return weeks


@staff_required(VIEW)
def dashboard(request):
    today = timezone.localdate()
    open_requests = PrivacyRequest.objects.filter(state__in=OPEN_STATES).alias(
        current_due=current_due())
    by_state = dict(open_requests.values("state").annotate(n=Count("id"))
                    .values_list("state", "n"))
    deadlines = open_requests.aggregate(
        overdue=Count("id", filter=Q(current_due__lt=today)),
        due_week=Count("id", filter=Q(current_due__gte=today,
                                      current_due__lte=today + datetime.timedelta(days=WEEK_DAYS))),
        ack_due=Count("id", filter=Q(acknowledged_at=None, acknowledge_by__isnull=False)),
        mine=Count("id", filter=Q(assignee=request.user)),
        unassigned=Count("id", filter=Q(assignee=None)),
    )
    sources = {
        "failed_runs": SourceRun.objects.filter(state=SourceRun.State.FAILED,
                                                request__state__in=OPEN_STATES).count(),
        "needs_attention": by_state.get(State.NEEDS_ATTENTION, 0),
        "waiting_manual": SourceRun.objects.filter(state=SourceRun.State.WAITING,
                                                   request__state__in=OPEN_STATES).count(),
        "unhealthy": list(DataSource.objects.filter(health=DataSource.Health.UNHEALTHY)),
    }
    states = [{"value": s.value, "label": s.label, "count": by_state.get(s.value, 0)}
              for s in State if s.value in OPEN_STATES]
    return render(request, "staff/dashboard.html", {
        "states": states, "deadlines": deadlines, "sources": sources,
        "weeks": weekly_counts(today), "total_open": sum(by_state.values()), "today": today,
        **violations_panel(),
    })
