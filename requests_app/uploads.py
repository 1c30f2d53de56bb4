"""Files people upload to prove who they are (a signed declaration, an identity
document, a parent's proof): the type is read from the first bytes, never from
the name or the browser's word, and the size is bounded. Every refusal says what
to do about it."""

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

SIGNATURES = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
]


def sniff(upload) -> str | None:
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    for magic, content_type in SIGNATURES:
        if head.startswith(magic):
            return content_type
    return None


def checked_type(upload, max_bytes: int, what: str) -> str:
    """The content type of an acceptable upload; ValidationError with words else."""
    if upload.size == 0:
        raise ValidationError(_("%(what)s is empty: upload the file again.") % {"what": what})
    if upload.size > max_bytes:
        raise ValidationError(_("%(what)s is too large: upload a file of at most %(mb)s MB.")
                              % {"what": what, "mb": max_bytes // (1024 * 1024)})
    content_type = sniff(upload)
    if content_type is None:
        raise ValidationError(_("%(what)s must be a PDF, PNG or JPEG file; this file is of "
                                "another type, whatever its name says.") % {"what": what})
    return content_type
