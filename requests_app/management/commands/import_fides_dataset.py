"""Turn a Fides dataset YAML into a Privacy Portal dataset map (printed, to review
and paste into the source's "dataset map" field). What the map cannot say is
listed at its top and given as warnings, naming the file, collection and field.

    python manage.py import_fides_dataset path/to/fides_dataset.yml > shop_map.yaml
    python manage.py import_fides_dataset datasets.yml --dataset mongo_test
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from requests_app.sources.datamap import DatasetMapError
from requests_app.sources.fides import import_fides


class Command(BaseCommand):
    help = "Convert a Fides dataset YAML into a dataset map."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--dataset", help="the fides_key of the dataset to import, "
                                              "when the file holds several (default: the first)")

    def handle(self, *args, path, dataset=None, **options):
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            imported = import_fides(text, Path(path).name, dataset)
        except DatasetMapError as exc:
            raise CommandError("\n".join(exc.messages)) from None
        self.stdout.write(imported.map_text)
        if imported.unsupported:
            self.stderr.write(self.style.WARNING(
                f"Not carried over into the map ({len(imported.unsupported)}; listed at its "
                "top too):"))
            for item in imported.unsupported:
                self.stderr.write(self.style.WARNING(f"  - {item}"))
