"""JUnit XML written from an ingest report, read back with junitparser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import Failure, JUnitXml, Skipped

from ingest.model import ADVICE, FLAGGED, Status
from ingest.report.junit import junit_xml, visible_name, write_junit


def _file(path: str, status: str, detail: str = "", seconds: float = 0.25, **extra) -> dict:
    record = {
        "path": path, "kind": "raw", "size": 10, "mtime_ns": 0, "xxh3_128": "0" * 32,
        "status": status, "detail": detail, "seconds": seconds,
        "copies": [{"destination": "/mnt/a", "path": f"2026/2026-11-20/{path.rsplit('/', 1)[-1]}",
                    "verified": status == "verified", "action": "copied"}],
    }
    record.update(extra)
    return record


def _report(files: list[dict], *, command: str = "offload", source: str | None = "/media/card",
            destinations: list[dict] | None = None) -> dict:
    return {
        "schema": "ingest-report/1", "command": command, "tool_version": "0.1.0",
        "started_at": "2026-11-26T05:00:00+00:00", "finished_at": "2026-11-26T05:00:12+00:00",
        "seconds": 12.5, "source": source,
        "destinations": destinations if destinations is not None else [
            {"root": "/mnt/a", "device": 2049, "files": len(files), "bytes": 1, "error": None}],
        "files": files,
        "summary": {"files": len(files), "bytes": 1, "by_status": {}, "flagged": 0,
                    "safe_to_format": False, "verdict": "Keep the card."},
    }


EVERY_STATUS = [_file(f"DCIM/100NIKON/F_{s.value}.NEF", s.value, detail=f"why {s.value}")
                for s in Status]


def _cases(xml: JUnitXml) -> dict[str, object]:
    (suite,) = list(xml)
    return {case.name: case for case in suite}


def test_counts_and_result_types_for_every_status(tmp_path: Path) -> None:
    out = write_junit(_report(EVERY_STATUS), tmp_path / "junit.xml")
    xml = JUnitXml.fromfile(str(out))
    (suite,) = list(xml)
    failing = FLAGGED - {Status.UNVERIFIED}
    assert suite.name == "ingest offload /media/card"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (
        len(Status), len(failing), 0, 2)
    assert suite.time == 12.5
    assert suite.timestamp == "2026-11-26T05:00:00+00:00"
    assert (xml.tests, xml.failures, xml.skipped) == (suite.tests, suite.failures, suite.skipped)

    cases = _cases(xml)
    for status in Status:
        case = cases[f"F_{status.value}.NEF"]
        assert case.classname == "DCIM/100NIKON"
        assert case.time == 0.25
        if status in failing:
            (result,) = case.result
            assert isinstance(result, Failure)
            assert result.type == status.value
            assert result.message == f"why {status.value}"
            assert ADVICE[status] in result.text and "copy: /mnt/a/2026/2026-11-20/" in result.text
        elif status in (Status.UNVERIFIED, Status.SKIPPED):
            (result,) = case.result
            assert isinstance(result, Skipped)
            assert result.message == f"why {status.value}"
        else:
            assert case.is_passed, status
    assert "Not in the catalog" in cases["F_untracked.NEF"].system_out
    assert cases["F_verified.NEF"].system_out == "verified: why verified\nNothing to do."


def test_plain_verified_file_has_no_output() -> None:
    xml = JUnitXml.fromstring(junit_xml(_report([_file("DCIM/A.JPG", "verified")])))
    (case,) = _cases(xml).values()
    assert case.is_passed and case.system_out is None and case.result == []


def test_top_level_file_verify_run_and_missing_detail() -> None:
    report = _report(
        [_file("README.TXT", "corrupt", detail=""), _file("a/b/c.jpg", "unverified", detail="")],
        command="verify", source=None,
        destinations=[{"root": "/mnt/a", "error": None}, {"root": "/mnt/b", "error": None}],
    )
    xml = JUnitXml.fromstring(junit_xml(report))
    (suite,) = list(xml)
    assert suite.name == "ingest verify /mnt/a, /mnt/b"
    cases = _cases(xml)
    assert cases["README.TXT"].classname == "."
    assert cases["README.TXT"].result[0].message == "corrupt"  # no detail: the status stands in
    assert cases["c.jpg"].classname == "a/b"
    assert cases["c.jpg"].result[0].message == ADVICE[Status.UNVERIFIED]


def test_destination_error_is_a_failing_case() -> None:
    report = _report([_file("DCIM/A.JPG", "verified")], destinations=[
        {"root": "/mnt/a", "error": None},
        {"root": "/mnt/b", "error": "No space left on device"}])
    xml = JUnitXml.fromstring(junit_xml(report))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures) == (2, 1)
    case = _cases(xml)["/mnt/b"]
    assert case.classname == "destinations"
    assert case.result[0].type == "destination_error"
    assert case.result[0].message == "No space left on device"


def test_unknown_status_fails_instead_of_passing() -> None:
    xml = JUnitXml.fromstring(junit_xml(_report([_file("X/Y.CR3", "exploded")])))
    (result,) = _cases(xml)["Y.CR3"].result
    assert isinstance(result, Failure) and result.type == "exploded"


def test_control_characters_and_undecodable_bytes_stay_visible(tmp_path: Path) -> None:
    # What a hostile or damaged FAT directory can hand us after os.fsdecode().
    nasty = "DCIM/1\x1b[31m/DSC\n0001\x01\udcff.JPG"
    report = _report([_file(nasty, "needs_recopy", detail="read error\x00 at byte 5\nretry")])
    out = write_junit(report, tmp_path / "junit.xml")
    ET.parse(out)  # well-formed XML 1.0
    (case,) = list(next(iter(JUnitXml.fromfile(str(out)))))
    assert case.name == "DSC\\n0001\\x01\\xff.JPG"
    assert case.classname == "DCIM/1\\x1b[31m"
    assert case.result[0].message == "read error\\x00 at byte 5\\nretry"
    assert case.result[0].text.startswith("read error\\x00 at byte 5\nretry")


@settings(max_examples=60, deadline=None)
@given(
    folder=st.text(st.characters(exclude_characters="/"), max_size=12),
    name=st.text(st.characters(exclude_characters="/"), min_size=1, max_size=12),
    detail=st.text(max_size=30),
)
def test_any_text_gives_parseable_xml_with_the_escaped_name(folder, name, detail) -> None:
    path = f"{folder}/{name}" if folder else name
    data = junit_xml(_report([_file(path, "damaged_on_card", detail=detail)]))
    (case,) = list(next(iter(JUnitXml.fromstring(data))))
    assert case.name == visible_name(name)
    assert case.classname == (visible_name(folder) if folder else ".")
    assert case.result[0].message == (visible_name(detail) if detail else "damaged_on_card")


def test_write_replaces_atomically_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "junit.xml"
    write_junit(_report(EVERY_STATUS), out)
    write_junit(_report([_file("A/B.JPG", "verified")]), out)
    assert [p.name for p in out.parent.iterdir()] == ["junit.xml"]
    assert next(iter(JUnitXml.fromfile(str(out)))).tests == 1


# The part of the common JUnit schema (Jenkins/Ant "JUnit.xsd") that this writer emits.
JUNIT_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:complexType name="result" mixed="true">
    <xs:attribute name="message" type="xs:string"/>
    <xs:attribute name="type" type="xs:string"/>
  </xs:complexType>
  <xs:element name="testsuites">
    <xs:complexType><xs:sequence>
      <xs:element name="testsuite" maxOccurs="unbounded"><xs:complexType><xs:sequence>
        <xs:element name="properties" minOccurs="0"><xs:complexType><xs:sequence>
          <xs:element name="property" minOccurs="0" maxOccurs="unbounded"><xs:complexType>
            <xs:attribute name="name" type="xs:string" use="required"/>
            <xs:attribute name="value" type="xs:string" use="required"/>
          </xs:complexType></xs:element>
        </xs:sequence></xs:complexType></xs:element>
        <xs:element name="testcase" minOccurs="0" maxOccurs="unbounded"><xs:complexType>
          <xs:sequence>
            <xs:choice minOccurs="0">
              <xs:element name="skipped" type="result"/>
              <xs:element name="failure" type="result"/>
              <xs:element name="error" type="result"/>
            </xs:choice>
            <xs:element name="system-out" type="xs:string" minOccurs="0"/>
          </xs:sequence>
          <xs:attribute name="name" type="xs:string" use="required"/>
          <xs:attribute name="classname" type="xs:string" use="required"/>
          <xs:attribute name="time" type="xs:decimal"/>
        </xs:complexType></xs:element>
        <xs:element name="system-out" type="xs:string" minOccurs="0"/>
      </xs:sequence>
        <xs:attribute name="name" type="xs:string" use="required"/>
        <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
        <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
        <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
        <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
        <xs:attribute name="time" type="xs:decimal"/>
        <xs:attribute name="timestamp" type="xs:dateTime"/>
      </xs:complexType></xs:element>
    </xs:sequence>
      <xs:attribute name="name" type="xs:string"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
      <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
      <xs:attribute name="time" type="xs:decimal"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


def test_matches_junit_schema_subset() -> None:
    etree = pytest.importorskip("lxml.etree", reason="lxml (an ascmhl dependency) not installed")
    schema = etree.XMLSchema(etree.fromstring(JUNIT_XSD.encode()))
    report = _report(EVERY_STATUS, destinations=[{"root": "/mnt/b", "error": "gone"}])
    doc = etree.fromstring(junit_xml(report))
    assert schema.validate(doc), schema.error_log
    doc.find("testsuite").set("tests", "-1")  # the schema subset does catch mistakes
    assert not schema.validate(doc)
