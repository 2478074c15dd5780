"""LibRaw's camera list, and an exact match of a file's EXIF Make/Model to one of its entries.

Why the match must be exact: when LibRaw rejects a file, the verdict is "damaged" only if LibRaw
supports that camera. "Damaged on the card" makes a photographer keep the card and spend an
evening on recovery, so a newer body must never borrow an older body's entry ("Canon EOS R5
Mark III" is not the "Canon EOS R5", "NIKON Z 9 II" is not the "Nikon Z 9", "R5 C" is not the
"R5"). A miss costs little: the file comes out unsupported (unverified) and its checksum still
proves the copy. So every rule below makes two spellings of ONE body equal; none of them lets
a word, a generation or a number go missing on one side only.

How EXIF names cameras, and what each rule undoes (all seen in real files or LibRaw's list):
- Case, spacing and punctuation differ: "NIKON Z 9" / "Nikon Z9", "ILCE-7M3" / "ILCE 7M3",
  "C5050Z" / "C-5050Z", "E-M1MarkII" / "E-M1 Mark II". Names are compared as a key of their
  letters and digits only; "+" is kept as a word ("P10+" is not the "P10").
- Generations are written four ways: "Mark II", "MkII", "M2" after a number ("DC-S5M2",
  "DSC-RX100M2", "ILCE-7M3") and "_2" (Nikon: "NIKON Z 6_2" is the "Z 6 II"), or a bare roman
  numeral ("X-T30 II"). All become one generation number; a generation on one side only still
  differs from none. "M2" counts only after a digit, so "EOS M2" stays the "EOS M2".
- The company in Make is not LibRaw's maker word: "NIKON CORPORATION", "Canon Inc.",
  "OLYMPUS IMAGING CORP.", "Eastman Kodak Company", "Konica Minolta Camera, Inc.", "Phase One"
  (LibRaw: "PhaseOne"), "OM Digital Solutions", "RICOH IMAGING COMPANY, LTD." for bodies whose
  Model says "PENTAX ...". Any word of Make, any leading run of its words written together, a
  few named aliases, and a Model's first word that is a LibRaw maker all select a maker.
- The maker repeated in Model ("NIKON D5000", "Canon EOS R6", "LEICA M10") is dropped.
- Trailing words that name no body: "Zoom Camera", "Zoom Digital Camera", "Digital Camera",
  "Camera", Canon's "DIGITAL" ("Canon EOS 350D DIGITAL"), and leading series words LibRaw
  omits (Kodak "Digital Science", "EasyShare"; Fujifilm "FinePix"): tried only after the full
  name found nothing, so "Ricoh GR Digital" stays the GR Digital, not the GR, and "PowerShot A5
  Zoom" its own entry. Old Coolpix bodies write "E5700" for LibRaw's "Coolpix 5700".
- LibRaw's entries hold aliases: "Canon EOS 550D / Rebel T2i / Kiss X4" (later names leave out
  the shared "EOS": they are also tried behind each leading part of the first name, so
  "Panasonic DMC-FZ35 / FZ38" lists "DMC-FZ38" and "Casio EX-ZR4000 / 5000" "EX-ZR5000"),
  "Minolta Alpha/Dynax/Maxxum 5D" (a shared last word), "Sony SLT-A55(V)" (an optional suffix).
- Parentheses in entries are of three kinds. Notes ("(CHDK hack)", "(raw decode only)",
  "(HE/HE* formats are not supported yet)") are not part of the name, but are returned with the
  entry so a caller can read them. Leica's "(Typ 240)" tells bodies apart ("M (Typ 240)" and
  "M (Typ 262)"), so it stays part of the name. Otherwise the parentheses hold another name of
  the body: a phone's model code ("Huawei P30 Pro (VOG-L29)", which is what its EXIF says) or
  Sony's marketing name ("Sony ILCE-7M3 (A7 III)"), each a name of its own. The name outside
  them counts alone only when it is a maker's code ("ILCE-7M3"): a bare marketing name may be
  another body ("Google Pixel 4a (5G)" is not the Pixel 4a, "HTC One (M9)" not the HTC One).
- "Nikon Coolscan NEF" names the scanner family, so any "COOLSCAN ..." model matches it.
"""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import rawpy


@functools.cache
def libraw_cameras() -> tuple[str, ...]:
    """LibRaw's camera list, read from the same library rawpy uses."""
    folder = Path(rawpy.__file__).parent
    for lib in sorted(folder.glob("libraw*.so*")) + sorted(folder.glob("libraw*.dll")):
        try:
            handle = ctypes.CDLL(str(lib))
            handle.libraw_cameraList.restype = ctypes.POINTER(ctypes.c_char_p)
            handle.libraw_cameraCount.restype = ctypes.c_int
            names = handle.libraw_cameraList()
            return tuple(names[i].decode("latin-1") for i in range(handle.libraw_cameraCount()))
        except (OSError, AttributeError):
            continue
    return ()


# ---------------------------------------------------------------------------------------------
# Name keys

_ROMAN = {"ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8}
# "Mark II" / "MkII" / "M2" glued to the number before it: "E-M1MarkII", "DMC-GX7MK2",
# "DC-GX7mkIII", "ILCE-7RM3", "DSC-RX100M2". A bare "m" takes arabic digits only.
_GLUED_GENERATION = re.compile(r"^(.*\d[a-z]?)(?:(?:mark|mk)([ivx]+|\d+)|m(\d+))$")
_SPLIT_MARK = re.compile(r"^(mark|mk)([ivx]+|\d+)$")


def name_key(text: str) -> str:
    """Letters and digits only, lower case, with every way of writing a generation made one."""
    text = text.lower().replace("+", " plus ")
    text = re.sub(r"_(\d+)\s*$", r" mark \1", text)  # Nikon: "Z 6_2" is the "Z 6 II"
    words: list[str] = []
    for token in re.findall(r"[a-z0-9]+", text):
        glued = _GLUED_GENERATION.match(token)
        split = _SPLIT_MARK.match(token)
        if glued:
            words += [glued.group(1), "mark", glued.group(2) or glued.group(3)]
        elif split:
            words += ["mark", split.group(2)]
        else:
            words.append(token)
    out: list[str] = []
    for i, word in enumerate(words):
        if word in ("mark", "mk") and i + 1 < len(words) and _generation(words[i + 1]):
            continue  # the number that follows says it
        after_mark = i > 0 and words[i - 1] in ("mark", "mk")
        number = _generation(word)
        # A bare roman numeral is a generation only after the first word: "V-LUX" stays.
        if number and (after_mark or (i > 0 and word in _ROMAN)):
            out.append(f"gen{number}")
        else:
            out.append(word)
    return "".join(out)


def _generation(word: str) -> int | None:
    if word in _ROMAN:
        return _ROMAN[word]
    return int(word) if word.isdigit() and len(word) <= 2 else None


# ---------------------------------------------------------------------------------------------
# LibRaw's entries

# Entries whose maker is more than one word.
_MULTIWORD_MAKERS = ("OM Digital Solutions", "Digital Bolex")
# A word in an EXIF Make that names a maker LibRaw files under another word.
_MAKE_ALIASES = {
    "kyocera": "contax",  # the Contax N Digital's raws say KYOCERA
    "fuji": "fujifilm",   # "FUJI PHOTO FILM CO., LTD." on older bodies
    "lge": "lg",          # LG phones
    "hmd": "nokia",       # "HMD Global" Nokia phones
}
_NOTE_WORDS = {"hack", "hacked", "only", "supported", "menu", "mode"}
# A maker's code: letters, a hyphen, then something with a digit ("ILCE-7M3", "ZV-1").
_CODE = re.compile(r"[A-Za-z]+-[A-Za-z]*\d")
_FAMILIES = {"Nikon Coolscan NEF": "coolscan"}


@dataclass(frozen=True, slots=True)
class _Entry:
    text: str            # as LibRaw lists it
    keys: frozenset[str]
    family: str = ""     # a key prefix that matches the whole family


def _maker_of(entry: str) -> tuple[str, str]:
    for maker in _MULTIWORD_MAKERS:
        if entry.startswith(maker + " "):
            return maker, entry[len(maker) + 1:]
    maker, _, rest = entry.partition(" ")
    return maker, rest


def _leading_parts(name: str) -> list[str]:
    """Each leading part of a name that ends at a separator or where letters meet a digit:
    "EX-ZR4000" -> "EX", "EX-ZR"; "EOS M50" -> "EOS", "EOS M"."""
    out = []
    for i in range(1, len(name)):
        if name[i] in " -" and name[i - 1] not in " -":
            out.append(name[:i])
        elif name[i].isdigit() and name[i - 1].isalpha():
            out.append(name[:i])
    return out


def _alias_names(text: str) -> list[str]:
    """"EOS 550D / Rebel T2i / Kiss X4" -> every name it stands for."""
    parts = [p.strip() for p in re.split(r"[/,]", text) if p.strip()]
    if len(parts) > 1 and len(parts[-1].split()) > 1 and all(
            len(p.split()) == 1 and not any(c.isdigit() for c in p) for p in parts[:-1]):
        tail = " ".join(parts[-1].split()[1:])  # "Alpha/Dynax/Maxxum 5D"
        parts = [f"{p} {tail}" for p in parts[:-1]] + parts[-1:]
    names = [text] + parts
    for k, part in enumerate(parts[1:], start=1):
        for earlier in parts[:k]:
            names += [f"{lead} {part}" for lead in _leading_parts(earlier)]
    return names


def _parse_entry(entry: str) -> tuple[str, _Entry]:
    maker, rest = _maker_of(entry)
    rest = re.sub(r"(\w)\((\w{1,2})\)", r"\1 [\2]", rest)  # "SLT-A55(V)": optional suffix
    names: list[str] = []
    paren = re.search(r"\s\(([^)]*)\)\s*$", rest)
    base = rest[:paren.start()].strip() if paren else rest.strip()
    if paren is None:
        names += _alias_names(base)
    else:
        inside = paren.group(1)
        if set(re.findall(r"[a-z]+", inside.lower())) & _NOTE_WORDS:
            names += _alias_names(base)                      # a note: not part of the name
        elif inside.startswith("Typ"):
            names.append(f"{base} {inside}")                 # Leica: part of the name
        else:
            names.append(f"{base} {inside}")
            names += _alias_names(inside)                    # a model code or another name
            if _CODE.search(base):
                names += _alias_names(base)
    expanded: list[str] = []
    for name in names:
        optional = re.search(r" \[(\w+)\]", name)
        if optional:
            expanded += [name[:optional.start()] + name[optional.end():],
                         name[:optional.start()] + optional.group(1) + name[optional.end():]]
        else:
            expanded.append(name)
    keys = frozenset(k for k in (name_key(n) for n in expanded) if k)
    return name_key(maker), _Entry(entry, keys, _FAMILIES.get(entry, ""))


@functools.cache
def _index() -> dict[str, tuple[_Entry, ...]]:
    by_maker: dict[str, list[_Entry]] = {}
    for entry in libraw_cameras():
        maker, parsed = _parse_entry(entry)
        by_maker.setdefault(maker, []).append(parsed)
    return {maker: tuple(entries) for maker, entries in by_maker.items()}


# ---------------------------------------------------------------------------------------------
# A file's Make/Model

_TRAILING = re.compile(r"\s+(?:zoom\s+digital\s+camera|zoom\s+camera|digital\s+camera|camera|"
                       r"digital)\s*$", re.IGNORECASE)
_LEADING = re.compile(r"^(?:digital\s+science|easyshare|finepix)\s+", re.IGNORECASE)


def _maker_keys(make: str, model: str, known: dict) -> set[str]:
    words = re.findall(r"[a-z0-9]+", make.lower())
    keys = set(words) | {"".join(words[:n]) for n in range(2, len(words) + 1)}
    keys |= {_MAKE_ALIASES[w] for w in words if w in _MAKE_ALIASES}
    first = re.findall(r"[a-z0-9]+", model.lower().split(" ", 1)[0]) if model.strip() else []
    if len(first) == 1 and first[0] in known:
        keys.add(first[0])  # "PENTAX K-1" under "RICOH IMAGING COMPANY, LTD."
    return keys & known.keys()


def _model_names(model: str, makers: set[str]) -> list[str]:
    """The model as written, then with the maker dropped, then the fallbacks (see above)."""
    words = model.split()
    names = [model]
    if len(words) > 1 and name_key(words[0]) in makers:
        names.append(" ".join(words[1:]))
    for name in list(names):
        shorter = name
        while _TRAILING.search(shorter):
            shorter = _TRAILING.sub("", shorter)
        names += [shorter, _LEADING.sub("", shorter), _LEADING.sub("", name)]
        coolpix = re.fullmatch(r"E(\d{3,4})", name.strip())
        if coolpix:
            names.append(f"Coolpix {coolpix.group(1)}")
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out


def camera_support(make: str, model: str) -> tuple[bool | None, str]:
    """(known, LibRaw's entry as listed, with any note in parentheses).

    None when LibRaw's list is unavailable or the file names no Make; False when no entry of
    its maker is exactly this body (see the module docstring for what "exactly" allows)."""
    index = _index()
    if not index or not make.strip():
        return None, ""
    makers = _maker_keys(make, model, index)
    if not makers:
        return False, ""
    entries = [e for maker in sorted(makers) for e in index[maker]]
    for name in _model_names(model, makers):
        key = name_key(name)
        for entry in entries:
            if key in entry.keys or (entry.family and key.startswith(entry.family)):
                return True, entry.text
    return False, ""
