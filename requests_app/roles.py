"""Staff roles, as groups with permissions. The migration 0002_roles creates them
from this table; tests read it to build the role matrix."""

ROLES: dict[str, list[str]] = {
    "Privacy Analyst": [
        "requests_app.view_privacyrequest",
        "requests_app.work_request",
    ],
    "Privacy Manager": [
        "requests_app.view_privacyrequest",
        "requests_app.work_request",
        "requests_app.approve_deletion",
        "requests_app.release_results",
        "requests_app.deny_request",
        "requests_app.extend_deadline",
        "requests_app.decide_appeal",
        "requests_app.view_auditevent",
    ],
    "Auditor": [
        "requests_app.view_auditevent",
    ],
    "Source Owner": [],
}


def sync_roles(apps=None) -> None:
    """Create or update the role groups so each holds exactly its permissions."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    apps = apps or global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, apps=apps)
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
