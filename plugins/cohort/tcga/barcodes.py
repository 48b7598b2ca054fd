"""TCGA barcodes: which case, sample, vial, portion, analyte, plate and slide a name refers to.

A barcode reads `TCGA-TSS-PART-SSV-PPA-PLAT-CC` for an aliquot (`TCGA-CR-7395-01A-11R-A00Z-07`) and
`TCGA-TSS-PART-SSV-PP-TTN` for a slide (`TCGA-CR-7395-01A-01-TS1`): project, tissue source site,
participant, sample type (01 primary tumour, 11 solid normal, ...) and vial letter, portion (and
analyte for aliquots), plate and centre, or slide type (DX diagnostic FFPE, TS/BS frozen top/bottom
section, MS) and number. GDC file names put a UUID after the barcode (`...-DX1.70F638A0-....svs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SAMPLE_TYPES = {
    "01": "Primary Tumor",
    "02": "Recurrent Tumor",
    "03": "Primary Blood Derived Cancer - Peripheral Blood",
    "05": "Additional - New Primary",
    "06": "Metastatic",
    "07": "Additional Metastatic",
    "10": "Blood Derived Normal",
    "11": "Solid Tissue Normal",
    "12": "Buccal Cell Normal",
    "14": "Bone Marrow Normal",
}
SLIDE_TYPES = {
    "DX": "diagnostic (FFPE)",
    "TS": "frozen, top section",
    "BS": "frozen, bottom section",
    "MS": "frozen, middle section",
}

_BARCODE = re.compile(
    r"^(?P<project>TCGA)-(?P<tss>[A-Z0-9]{2})-(?P<participant>[A-Z0-9]{4})"
    r"(?:-(?P<sample>\d{2})(?P<vial>[A-Z])?"
    r"(?:-(?P<portion>\d{2})"
    r"(?:(?P<analyte>[A-Z])(?:-(?P<plate>[A-Z0-9]{4})(?:-(?P<center>\d{2}))?)?"  # an aliquot
    r"|-(?P<slide_type>[A-Z]{2})(?P<slide_number>[0-9A-Z]+))?"  # a slide
    r")?)?"
    r"(?=$|[.\s_])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Barcode:
    """The parts of a barcode that were present; absent parts are None."""

    text: str
    tss: str
    participant: str
    sample_type: str | None = None
    vial: str | None = None
    portion: str | None = None
    analyte: str | None = None
    plate: str | None = None
    center: str | None = None
    slide_type: str | None = None
    slide_number: str | None = None

    @property
    def case_id(self) -> str:
        """The patient: `TCGA-CR-7395` (GDC's case submitter id)."""
        return f"TCGA-{self.tss}-{self.participant}"

    @property
    def sample_id(self) -> str | None:
        """`TCGA-CR-7395-01A` (with the vial when known), as GDC sample sheets write it."""
        if self.sample_type is None:
            return None
        return f"{self.case_id}-{self.sample_type}{self.vial or ''}"

    @property
    def is_slide(self) -> bool:
        return self.slide_type is not None


def parse_barcode(text: str) -> Barcode | None:
    """The barcode at the start of `text` (a bare barcode or a GDC file name), or None.

    Upper-cased, so `tcga-cr-7395-01a-01-ts1.svs` parses as well.
    """
    match = _BARCODE.match(text.strip().upper())
    if match is None:
        return None
    parts = match.groupdict()
    return Barcode(
        text=match.group(0),
        tss=parts["tss"],
        participant=parts["participant"],
        sample_type=parts["sample"],
        vial=parts["vial"],
        portion=parts["portion"],
        analyte=parts["analyte"],
        plate=parts["plate"],
        center=parts["center"],
        slide_type=parts["slide_type"],
        slide_number=parts["slide_number"] or None,
    )


def sample_type_name(code: str | None) -> str:
    if code is None:
        return "unknown (the id has no sample part)"
    return SAMPLE_TYPES.get(code, f"sample type {code}")


# Broad GDAC Firehose replicate filter (its 'Replicate Samples' rules): for RNA,
# analyte H is preferred to R, and both to T (the inferior extraction protocol); then the later plate;
# then the highest barcode in lexicographic order.
RNA_ANALYTE_RANK = {"H": 3, "R": 2, "T": 1}


def aliquot_preference(barcode: Barcode, tie_break: str = "") -> tuple[int, str, str, str]:
    """Sort key: the aliquot with the largest key is the one the Firehose rule keeps."""
    return (
        RNA_ANALYTE_RANK.get(barcode.analyte or "", 0),
        barcode.plate or "",
        barcode.text,
        tie_break,
    )
