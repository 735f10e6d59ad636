#!/usr/bin/env python
"""Build a small, real English–Sinhala parallel corpus from Unicode CLDR.

The translations come from the CLDR locale data that the ``babel`` package
ships (``babel.Locale('en')`` vs ``babel.Locale('si')``): names of territories,
languages, scripts, currencies, locales, time zones and units, calendar words,
and phrases that babel formats with CLDR's own patterns (dates, durations,
measurements). Nothing is downloaded.

Output, in the Tatoeba Challenge layout that FlexFlow's mT5 example reads::

    <out>/train.src  train.trg  train.id  test.src  test.trg  test.id
    <out>/provenance.json  LICENSE.unicode (CLDR's licence, copied from babel)

``*.src`` is English, ``*.trg`` Sinhala, ``*.id`` holds ``eng<TAB>sin`` per line.
The output is a pure function of the babel (CLDR) version and ``--seed``:
re-running with the same babel gives byte-identical files.

Usage: python scripts/make_eng_sin_data.py [--out data/eng-sin] [--seed 1234]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import re
import sys
from pathlib import Path

import babel
from babel import Locale, dates, localedata, units
from babel.core import get_cldr_version

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "eng-sin"
DEFAULT_SEED = 1234
TEST_FRACTION = 0.10
FILES = ("train.src", "train.trg", "train.id", "test.src", "test.trg", "test.id")

_SINHALA = re.compile("[\u0d80-\u0dff]")
_LATIN = re.compile("[A-Za-z]")
_SPACE = re.compile(r"\s+")


def _clean(text) -> str:
    """One line of text: whitespace runs (incl. tabs/newlines, NBSP) become one space."""
    return _SPACE.sub(" ", str(text)).strip() if text is not None else ""


def _plain(d) -> dict:
    """LocaleDataDict -> plain dict (keys resolved through CLDR aliases)."""
    return {k: d[k] for k in d} if d is not None else {}


def _same_keys(en: dict, si: dict, category: str):
    for key in sorted(en, key=str):
        if key in si and isinstance(en[key], str) and isinstance(si[key], str):
            yield category, en[key], si[key]


def names(en: Locale, si: Locale):
    """Display names: territories, languages, scripts, currencies, measurement systems."""
    yield from _same_keys(_plain(en.territories), _plain(si.territories), "territory")
    yield from _same_keys(_plain(en.languages), _plain(si.languages), "language")
    yield from _same_keys(_plain(en.scripts), _plain(si.scripts), "script")
    yield from _same_keys(_plain(en.currencies), _plain(si.currencies), "currency")
    yield from _same_keys(_plain(en.measurement_systems), _plain(si.measurement_systems),
                          "measurement_system")


def locale_names(en: Locale, si: Locale):
    """Full locale display names such as 'Tamil (Sri Lanka)'."""
    for ident in sorted(localedata.locale_identifiers()):
        if ident == "root":
            continue
        loc = Locale.parse(ident)
        yield "locale", loc.get_display_name(en), loc.get_display_name(si)


def calendar(en: Locale, si: Locale):
    """Month, weekday, quarter, era and day-period names in every shared width."""
    for field in ("months", "days", "quarters", "day_periods"):
        for context in ("format", "stand-alone"):
            for width in ("wide", "abbreviated"):
                e = _plain(en._data[field][context][width])
                s = _plain(si._data[field][context][width])
                yield from _same_keys(e, s, field)
    for width in ("wide", "abbreviated"):
        yield from _same_keys(_plain(en.eras[width]), _plain(si.eras[width]), "eras")


def time_zones(en: Locale, si: Locale):
    """Metazone names ('India Standard Time') and exemplar cities of time zones."""
    for zone in sorted(si._data["meta_zones"]):
        e, s = en._data["meta_zones"].get(zone), si._data["meta_zones"][zone]
        for kind in ("long",):
            if e is None or kind not in e or kind not in s:
                continue
            yield from _same_keys(_plain(e[kind]), _plain(s[kind]), "meta_zone")
    for zone in sorted(si._data["time_zones"]):
        s_city = si._data["time_zones"][zone].get("city")
        if not s_city:
            continue
        e_zone = en._data["time_zones"].get(zone)
        e_city = e_zone.get("city") if e_zone is not None else None
        # CLDR's fallback rule for an exemplar city: last tz-id segment, '_' -> ' '.
        e_city = e_city or zone.split("/")[-1].replace("_", " ")
        yield "zone_city", e_city, s_city


def unit_phrases(en: Locale, si: Locale):
    """Unit display names and measurements formatted with CLDR unit patterns."""
    e_names, s_names = en._data["unit_display_names"], si._data["unit_display_names"]
    for unit in sorted(si._data["unit_display_names"]):
        if unit not in e_names:
            continue
        for length in ("long", "short"):
            e, s = e_names[unit].get(length), s_names[unit].get(length)
            if isinstance(e, str) and isinstance(s, str):
                yield "unit_name", e, s
    for unit in sorted(si._data["unit_patterns"]):
        if unit not in en._data["unit_patterns"]:
            continue
        for value in (1, 3):
            try:
                e = units.format_unit(value, unit, length="long", locale=en)
                s = units.format_unit(value, unit, length="long", locale=si)
            except (units.UnknownUnitError, KeyError, ValueError):
                continue
            yield "unit_measure", e, s


def relative_time(en: Locale, si: Locale):
    """Durations and relative times ('in 3 days', '2 hours ago', '5 weeks')."""
    steps = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
    for unit, secs in steps.items():
        for n in (1, 2, 3, 5, 10, 12):
            delta = dt.timedelta(seconds=n * secs)
            for direction in (None, "past", "future"):
                d = -delta if direction == "past" else delta
                kw = dict(threshold=100, add_direction=direction is not None,
                          granularity=unit, format="long")
                yield ("duration", dates.format_timedelta(d, locale=en, **kw),
                       dates.format_timedelta(d, locale=si, **kw))


def date_phrases(en: Locale, si: Locale):
    """Dates in CLDR's full and long formats (every 5th day of 2024)."""
    day = dt.date(2024, 1, 1)
    while day.year == 2024:
        for fmt in ("full", "long"):
            yield "date", dates.format_date(day, fmt, locale=en), dates.format_date(day, fmt, locale=si)
        day += dt.timedelta(days=5)


SOURCES = (names, locale_names, calendar, time_zones, unit_phrases, relative_time, date_phrases)


def collect_pairs() -> list[tuple[str, str, str]]:
    """All (category, english, sinhala) pairs, filtered and deduplicated.

    A pair is kept when both sides are non-empty, differ, the Sinhala side
    contains Sinhala script (not an English fallback) and the English side
    contains Latin letters. Each English sentence is kept once (first source
    wins), so a source sentence can never land in both train and test.
    """
    en, si = Locale("en"), Locale("si")
    seen: set[str] = set()
    pairs = []
    for source in SOURCES:
        for category, e, s in source(en, si):
            e, s = _clean(e), _clean(s)
            if not e or not s or e == s or "{" in e + s:
                continue
            if not _SINHALA.search(s) or not _LATIN.search(e) or e.lower() in seen:
                continue
            seen.add(e.lower())
            pairs.append((category, e, s))
    return pairs


def split_pairs(pairs, seed: int = DEFAULT_SEED, test_fraction: float = TEST_FRACTION):
    """Seeded shuffle, then the first ``round(N * test_fraction)`` pairs are the test split."""
    order = list(pairs)
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test_fraction)
    return order[n_test:], order[:n_test]


def _write_lines(path: Path, lines) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)


def write_corpus(out: Path, seed: int = DEFAULT_SEED) -> dict:
    """Write the six Tatoeba-layout files and ``provenance.json``; return the provenance."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = collect_pairs()
    train, test = split_pairs(pairs, seed)
    for split, rows in (("train", train), ("test", test)):
        _write_lines(out / f"{split}.src", [e for _, e, _ in rows])
        _write_lines(out / f"{split}.trg", [s for _, _, s in rows])
        _write_lines(out / f"{split}.id", ["eng\tsin"] * len(rows))
    categories: dict[str, int] = {}
    for category, _, _ in pairs:
        categories[category] = categories.get(category, 0) + 1
    provenance = {
        "source": "Unicode CLDR locale data 'en' and 'si' via the babel package",
        "license": "Unicode License v3 (CLDR data); see data/README.md",
        "babel_version": babel.__version__,
        "cldr_version": str(get_cldr_version()),
        "seed": seed,
        "test_fraction": TEST_FRACTION,
        "pairs": len(pairs),
        "train": len(train),
        "test": len(test),
        "categories": categories,
        "sha256": {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in FILES},
    }
    licence = Path(babel.__file__).parent / "locale-data" / "LICENSE.unicode"
    if licence.is_file():  # the Unicode licence asks for its notice to travel with the data
        (out / "LICENSE.unicode").write_bytes(licence.read_bytes())
    (out / "provenance.json").write_text(
        json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return provenance


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: data/eng-sin)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed (default: %(default)s)")
    args = parser.parse_args(argv)
    prov = write_corpus(args.out, args.seed)
    print(f"wrote {prov['pairs']} pairs ({prov['train']} train / {prov['test']} test) to {args.out} "
          f"from CLDR {prov['cldr_version']} (babel {prov['babel_version']})")
    for category, count in prov["categories"].items():
        print(f"  {category:<20}{count:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
