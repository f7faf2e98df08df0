"""The vendor's branding: who the partner-facing pages and emails say is asking, and its logo as a data: URI."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

# The vendor's logo is embedded in the partner-facing pages as a data: URI (the CSP's img-src already allows
# data:, so no other origin is trusted and nothing new is served); a logo is small, and a large file is a mistake.
VENDOR_NAME_MAX = 120  # Entra ID's limit on an app registration's display name
VENDOR_LOGO_MAX_BYTES = 100 * 1024
VENDOR_LOGO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Vendor:
    """The vendor's name (as its app registration shows it), support address and logo, each possibly unset."""

    name: str = ""
    support_email: str = ""
    logo_path: str = ""
    logo_data_uri: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        """The name, or words that stand in for it in a sentence ("your Control Panel Vendor")."""
        return self.name or "your Control Panel Vendor"

    def subject(self, text: str) -> str:
        """An email subject that says who sends it: "Contoso: <text>", or the text alone when no name is set."""
        return f"{self.name}: {text}" if self.name else text[:1].upper() + text[1:]


def logo_data_uri(path: Path) -> str:
    """The logo file as a data: URI. Raises ValueError saying what is wrong with the file."""
    media_type = VENDOR_LOGO_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise ValueError(f"must be a {', '.join(sorted({k.lstrip('.') for k in VENDOR_LOGO_TYPES}))} file")
    try:
        size = path.stat().st_size
        if not 0 < size <= VENDOR_LOGO_MAX_BYTES:
            raise ValueError(f"must hold 1 byte to {VENDOR_LOGO_MAX_BYTES // 1024} KB, and holds {size} bytes")
        data = path.read_bytes()
    except OSError:
        raise ValueError("is not a readable file") from None
    # The content must be what the name says: a browser shown a mislabelled image shows nothing.
    signatures = {
        "image/png": data.startswith(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg": data.startswith(b"\xff\xd8\xff"),
        "image/webp": data[:4] == b"RIFF" and data[8:12] == b"WEBP",
        "image/svg+xml": b"<svg" in data[:2048],
    }
    if not signatures[media_type]:
        raise ValueError(f"does not hold a {media_type} image")
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"
