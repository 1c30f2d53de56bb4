"""Management commands: demo data and logins, diagrams generated from the code, the audit chain's verifier, the Fides importer."""
