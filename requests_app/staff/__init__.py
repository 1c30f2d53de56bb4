"""The staff workspace: TOTP login, dashboard, queue, request desk, intake, email templates, source owners' tasks."""
