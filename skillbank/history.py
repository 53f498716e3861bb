"""Versions of a skill: its history on the current branch, any version's files, diffs.

Every commit that changed a skill is a version of it (`skillbank.library.SkillLibrary` reads
skills at any revision with ``git cat-file``, never touching the working tree). `History`
answers the questions a reviewer asks: what versions exist (`History.history`), what a
version held (`History.at`), and what changed between two of them and what that change
means for callers (`History.diff`: the bump it needs, breaking signature changes first).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from skillbank.errors import LibraryError, SkillNotFound
from skillbank.library import SkillLibrary
from skillbank.skill import Skill
from skillbank.versioning import HistoryEntry, parse_version, required_bump, signature_diff

__all__ = ["History", "SkillDiff"]


@dataclass(frozen=True)
class SkillDiff:
    """How a skill changed between two versions: what `skillbank diff` shows (and ``--json``)."""

    skill_id: str
    #: What each side is ("1.0.0 (abc123...)", "working tree", "nothing (first version)").
    old_label: str
    new_label: str
    #: The versions; ``old_version`` is None for a first version.
    old_version: str | None
    new_version: str
    #: The bump the change needs ("major", "minor", "patch"), None when only cases or metadata
    #: changed, or when there is no old version.
    bump: str | None
    #: Whether the signature change breaks callers.
    breaking: bool
    #: The signature changes, one line each ("parameter 'x' removed").
    changes: tuple[str, ...]
    #: The new signature, as `Signature.render` writes it.
    signature: str
    #: File name -> unified diff lines, for the files that differ (skill.py first).
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def render(self) -> str:
        """The text `skillbank diff` prints."""
        head = [f"skillbank diff {self.skill_id}: {self.old_label} -> {self.new_label}"]
        if self.old_version is None:
            head.append(f"new skill: v{self.new_version}, signature {self.signature}")
        else:
            head.append(
                f"version {self.old_version} -> {self.new_version}; the change needs "
                + (f"a {self.bump} bump" if self.bump else "no bump (cases or metadata only)")
                + ("; the signature change is BREAKING" if self.breaking else "")
            )
            head += [f"  - {line}" for line in self.changes]
        body = [line for lines in self.files.values() for line in lines]
        return "\n".join([*head, "", *(body or ["(no differences)"])]) + "\n"

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form: the same facts, the diff of each file as one text."""
        return {
            "skill_id": self.skill_id,
            "old": {"label": self.old_label, "version": self.old_version},
            "new": {"label": self.new_label, "version": self.new_version},
            "bump": self.bump,
            "breaking": self.breaking,
            "changes": list(self.changes),
            "signature": self.signature,
            # A list, not an object: JSON output sorts keys, and skill.py comes first.
            "files": [
                {"name": name, "diff": "\n".join(lines) + "\n"}
                for name, lines in self.files.items()
            ],
        }


class History:
    """The versions of the skills in one library."""

    def __init__(self, library: SkillLibrary) -> None:
        self.library = library

    def history(self, skill_id: str) -> list[HistoryEntry]:
        """The commits that changed a skill on the current branch, newest first.

        Raises:
            SkillNotFound: the skill is neither in the library nor in its history.
        """
        entries = self.library.history(skill_id)
        if not entries and skill_id not in self.library.ids():
            raise SkillNotFound(skill_id, self.library.ids())
        return entries

    def at(self, skill_id: str, spec: str) -> tuple[Skill, dict[str, str], str]:
        """A skill at a version (``"1.2.0"``, ``"1"``, ``"v1.2.0"``) or a git revision.

        A version means the newest commit on the current branch holding it. Returns the
        skill, the texts of its files, and a label for readers.
        """
        entries = self.library.history(skill_id)
        try:
            wanted: str | None = str(parse_version(spec))
        except ValueError:
            wanted = None
        found = next((e for e in entries if e.version == wanted), None)
        if found is not None:
            rev, label = found.commit, f"{wanted} ({found.commit[:12]})"
        else:
            known = ", ".join(dict.fromkeys(e.version for e in entries)) or "none committed"
            try:
                rev = self.library.commit_of(spec)
            except LibraryError:
                if skill_id not in self.library.ids() and not entries:
                    raise SkillNotFound(skill_id, self.library.ids()) from None
                what = f"no version {wanted}" if wanted else f"no version {spec!r}"
                raise LibraryError(
                    f"{skill_id!r} has {what} on this branch (its versions: {known}), and "
                    f"{spec!r} is not a git revision either; see `skillbank history {skill_id}`"
                ) from None
            label = f"{spec} ({rev[:12]})"
        texts = self.library.files_at(skill_id, rev)
        skill = self.library.load_at(skill_id, rev)
        if texts is None or skill is None:
            if skill_id not in self.library.ids() and not entries:
                raise SkillNotFound(skill_id, self.library.ids())
            raise LibraryError(f"{skill_id!r} did not exist at {spec!r} ({rev[:12]})")
        return skill, texts, label

    def diff(self, skill_id: str, a: str | None = None, b: str | None = None) -> str:
        """A unified diff of a skill's files between two versions, with what the change means.

        The text of `compare`'s result; see there for ``a``, ``b`` and the errors.
        """
        return self.compare(skill_id, a, b).render()

    def compare(self, skill_id: str, a: str | None = None, b: str | None = None) -> SkillDiff:
        """How a skill's files changed between two versions, and what the change means.

        ``a`` and ``b`` are versions (``"1.2.0"``, ``"1"``, ``"v1.2.0"``) or git revisions.
        By default ``b`` is the working tree and ``a`` the version before ``b``'s (nothing,
        for a first version). The header says the version bump the change needs and lists
        the signature changes, breaking or not; ``skill.py`` comes first.

        Raises:
            SkillNotFound: no such skill.
            LibraryError: a version or revision that does not hold the skill.
        """
        if b is None:
            new, new_texts, new_label = (
                self.library.load(skill_id),
                self.library.files(skill_id),
                "working tree",
            )
        else:
            new, new_texts, new_label = self.at(skill_id, b)
        old: Skill | None
        old_texts: dict[str, str]
        if a is None:
            old, old_texts, old_label = None, {}, "nothing (first version)"
            mine = new.version
            for entry in self.library.history(skill_id):
                try:
                    earlier = parse_version(entry.version) < mine
                except ValueError:
                    continue
                if earlier:
                    old, old_texts, old_label = self.at(skill_id, entry.commit)
                    old_label = f"{entry.version} ({entry.commit[:12]})"
                    break
        else:
            old, old_texts, old_label = self.at(skill_id, a)
        rel = f"{self.library.rel}/{skill_id}"
        bump: str | None = None
        breaking = False
        changes: tuple[str, ...] = ()
        if old is not None:
            change = signature_diff(old.signature, new.signature)
            bump = required_bump(old.source, old.description, new.source, new.description)
            breaking, changes = change.breaking, tuple(change.changes)
        files: dict[str, tuple[str, ...]] = {}
        for name in ("skill.py", "SKILL.md", "cases.jsonl", "tools.json"):
            lines = tuple(
                difflib.unified_diff(
                    _lines(old_texts.get(name, "")),
                    _lines(new_texts.get(name, "")),
                    fromfile=f"a/{rel}/{name}" if old_texts else "/dev/null",
                    tofile=f"b/{rel}/{name}",
                    lineterm="",
                )
            )
            if lines:
                files[name] = lines
        return SkillDiff(
            skill_id=skill_id,
            old_label=old_label,
            new_label=new_label,
            old_version=None if old is None else str(old.version),
            new_version=str(new.version),
            bump=bump,
            breaking=breaking,
            changes=changes,
            signature=new.signature.render(),
            files=files,
        )


def _lines(text: str) -> list[str]:
    # Lines split on "\n" only (cases.jsonl keeps U+2028 and friends raw inside strings).
    if not text:
        return []
    return (text[:-1] if text.endswith("\n") else text).split("\n")
