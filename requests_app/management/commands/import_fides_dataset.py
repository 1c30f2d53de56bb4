"""Turn a Fides dataset YAML into a Privacy Portal dataset map (printed, to review
and paste into the source's "dataset map" field).

    python manage.py import_fides_dataset path/to/fides_dataset.yml > shop_map.yaml
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from requests_app.sources.datamap import DatasetMapError
from requests_app.sources.fides import from_fides


class Command(BaseCommand):
    help = "Convert a Fides dataset YAML into a dataset map."

    def add_arguments(self, parser):
        parser.add_argument("path")

    def handle(self, *args, path, **options):
        try:
            self.stdout.write(from_fides(Path(path).read_text()))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except DatasetMapError as exc:
            raise CommandError("; ".join(exc.messages)) from None
