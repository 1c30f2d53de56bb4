"""Staff roles, as groups with permissions. After every `migrate` (post_migrate,
see apps.py) the groups are made to hold exactly the permissions listed here, so
changing a role is an edit of this table; tests read it to build the role matrix."""

ROLES: dict[str, list[str]] = {
    "Privacy Analyst": [
        "requests_app.view_privacyrequest",
        "requests_app.work_request",
        "requests_app.view_consentrecord",
    ],
    "Privacy Manager": [
        "requests_app.view_privacyrequest",
        "requests_app.work_request",
        "requests_app.assign_request",
        "requests_app.manage_email_templates",
        "requests_app.approve_deletion",
        "requests_app.release_results",
        "requests_app.deny_request",
        "requests_app.extend_deadline",
        "requests_app.decide_appeal",
        "requests_app.view_auditevent",
        "requests_app.manage_sources",
        "requests_app.view_datasource",
        "requests_app.add_datasource",
        "requests_app.change_datasource",
        "requests_app.view_thirdparty",
        "requests_app.add_thirdparty",
        "requests_app.change_thirdparty",
        "requests_app.view_purpose",
        "requests_app.add_purpose",
        "requests_app.change_purpose",
        "requests_app.view_consentrecord",
        "requests_app.view_disclosure",
    ],
    "Auditor": [
        "requests_app.view_auditevent",
    ],
    # Sees only the tasks of the manual sources they own (by ownership, not a permission).
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
            # In a migration's historical state a later model's permissions may not
            # exist yet; the post_migrate sync adds them.
            wanted.extend(
                Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
