"""The gate's report in the formats CI systems read: JUnit XML, SARIF 2.1.0, GitHub Actions.

* JUnit: one ``<testcase>`` per skill and check (classname ``skills.<id>``), so CI test tabs
  list every check; a failed check carries its findings, a skipped one says why.
* SARIF 2.1.0: one result per finding with its rule, level and file position, for code
  scanning dashboards.
* GitHub Actions: ``::error``/``::warning`` workflow commands (annotations on the pull
  request's diff) and a Markdown job summary appended to ``$GITHUB_STEP_SUMMARY``.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from skillbank.gate import ALL_RULES, CHECKS, GateFinding, GateReport

__all__ = [
    "dumps_sarif",
    "github_annotations",
    "github_summary",
    "junit_xml",
    "sarif",
    "write_github",
]

JSON = Any

_MARK = {"passed": "✅", "failed": "❌", "skipped": "➖"}


def _version() -> str:
    try:
        return package_version("skillbank")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


def junit_xml(report: GateReport) -> str:
    """The report as a JUnit XML document (one testcase per skill and check)."""
    suites = ET.Element("testsuites", name="skillbank gate")
    suite = ET.SubElement(suites, "testsuite", name="skillbank gate")
    failures = skipped = 0
    total = 0.0
    for outcome in report.outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"skills.{outcome.skill_id}",
            name=outcome.check,
            time=f"{outcome.duration_s:.4f}",
        )
        total += outcome.duration_s
        if outcome.status == "failed":
            failures += 1
            errors = [f for f in outcome.findings if f.level == "error"]
            failure = ET.SubElement(
                case,
                "failure",
                message=errors[0].message if errors else "failed",
                type=errors[0].rule if errors else "failed",
            )
            failure.text = "\n".join(f.render(report.root) for f in outcome.findings)
        elif outcome.status == "skipped":
            skipped += 1
            ET.SubElement(case, "skipped", message=outcome.detail)
        elif outcome.findings:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(f.render() for f in outcome.findings)
    for element in (suites, suite):
        element.set("tests", str(len(report.outcomes)))
        element.set("failures", str(failures))
        element.set("errors", "0")
        element.set("time", f"{total:.4f}")
    suite.set("skipped", str(skipped))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def sarif(report: GateReport) -> dict[str, JSON]:
    """The report as a SARIF 2.1.0 log (one run, one result per finding)."""
    used = sorted({f.rule for f in report.findings} | set(ALL_RULES))
    index = {rule: n for n, rule in enumerate(used)}
    rules = [
        {
            "id": rule,
            "name": rule,
            "shortDescription": {"text": ALL_RULES.get(rule, rule)},
            "defaultConfiguration": {"level": "error"},
        }
        for rule in used
    ]
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": f.level,
            "message": {"text": f"{f.skill_id} ({f.check}): {f.message}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": report.prefix + f.path,
                            "uriBaseId": "%SRCROOT%",
                        },
                        "region": {"startLine": max(f.line, 1), "startColumn": f.col + 1},
                    }
                }
            ],
        }
        for f in report.findings
    ]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "skillbank",
                        "version": _version(),
                        "semanticVersion": _version(),
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": _top(report).as_uri() + "/"}},
                "results": results,
            }
        ],
    }


def _top(report: GateReport) -> Path:
    """The top of the repository the bank lives in."""
    top = report.root
    for _ in Path(report.prefix).parts:
        top = top.parent
    return top


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(report: GateReport) -> list[str]:
    """One ``::error``/``::warning`` workflow command per finding."""
    lines = []
    for f in report.findings:
        props = (
            f"file={_escape_property(report.prefix + f.path)},line={max(f.line, 1)},"
            f"col={f.col + 1},"
            f"title={_escape_property(f'{f.rule} {f.skill_id} ({f.check})')}"
        )
        lines.append(f"::{f.level} {props}::{_escape_data(f.message)}")
    return lines


def github_summary(report: GateReport) -> str:
    """A Markdown job summary: one row per skill, one column per check, then the findings."""
    verdict = "passed" if report.ok else "failed"
    scope = f"changed since `{report.base}`" if report.base else "all skills"
    lines = [
        f"## skillbank gate {verdict}",
        "",
        f"{len(report.skills)} skill(s) checked ({scope}).",
    ]
    if report.removed:
        lines.append(f"Removed: {', '.join(f'`{r}`' for r in report.removed)}.")
    checks = [c for c in CHECKS if any(o.check == c for o in report.outcomes)]
    if report.skills:
        lines += ["", "| skill | " + " | ".join(checks) + " |"]
        lines.append("| --- |" + " --- |" * len(checks))
        for sid in report.skills:
            cells = []
            for check in checks:
                outcome = next(
                    (o for o in report.outcomes if o.skill_id == sid and o.check == check), None
                )
                cells.append(_MARK[outcome.status] if outcome else "")
            lines.append(f"| `{sid}` | " + " | ".join(cells) + " |")
    if report.findings:
        lines += ["", "### Findings", ""]
        lines += [_summary_line(f) for f in report.findings]
    return "\n".join(lines) + "\n"


def _summary_line(f: GateFinding) -> str:
    text = f.message.replace("\n", " ")
    return f"- **{f.rule}** {f.level} `{f.path}:{f.line}:{f.col}` ({f.skill_id}, {f.check}): {text}"


def write_github(
    report: GateReport, echo: Callable[[str], None], environ: dict[str, str] | None = None
) -> bool:
    """Inside GitHub Actions: print annotations and append the job summary. True if it did."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") != "true":
        return False
    for line in github_annotations(report):
        echo(line)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as fh:
            fh.write(github_summary(report))
    return True


def dumps_sarif(report: GateReport) -> str:
    """The SARIF log as text."""
    return json.dumps(sarif(report), indent=2, ensure_ascii=False) + "\n"
