"""The consumer portal: the request form, email confirmation, status, cancel, appeal and downloads."""
