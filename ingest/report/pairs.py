"""RAW+JPEG pair grouping: a camera set to RAW+JPEG writes two files per shot, and a
photographer thinks of them as one picture. Shared by every report that lists images."""

from __future__ import annotations

import posixpath

_RAW_KINDS = frozenset({"raw"})
_COMPANION_KINDS = frozenset({"jpeg", "heif"})


def _shot_key(record: dict) -> tuple[str, str]:
    """(folder, stem) of a record's card path. The stem is casefolded because camera cards
    are FAT/exFAT, where two names differing only in case cannot sit in one folder anyway."""
    folder, name = posixpath.split(str(record.get("path", "")))
    stem = posixpath.splitext(name)[0]
    return folder, stem.casefold()


def group_pairs(files: list[dict]) -> list[list[dict]]:
    """Group records into display units of one or two records.

    A unit of two is exactly one RAW plus exactly one JPEG or HEIF with the same folder and
    stem; the RAW comes first. Anything ambiguous (RAW+JPEG+HEIF, two JPEGs, a stem without
    a RAW) stays as single records, so no file is hidden behind a guess. Units keep the
    order in which their first record appears in `files`; every record appears exactly once.
    """
    by_key: dict[tuple[str, str], list[int]] = {}
    for index, record in enumerate(files):
        if record.get("kind") in _RAW_KINDS or record.get("kind") in _COMPANION_KINDS:
            by_key.setdefault(_shot_key(record), []).append(index)

    partner: dict[int, int] = {}
    for indexes in by_key.values():
        if len(indexes) != 2:
            continue
        first, second = indexes
        kinds = {files[first].get("kind"), files[second].get("kind")}
        if len(kinds & _RAW_KINDS) == 1 and len(kinds & _COMPANION_KINDS) == 1:
            partner[first] = second
            partner[second] = first

    units: list[list[dict]] = []
    for index, record in enumerate(files):
        other = partner.get(index)
        if other is None:
            units.append([record])
        elif index < other:
            pair = [record, files[other]]
            if pair[0].get("kind") not in _RAW_KINDS:
                pair.reverse()
            units.append(pair)
    return units
