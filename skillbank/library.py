"""The skill library: one folder per skill under ``skills/``, kept in git.

Each skill is a folder named by its id, laid out like an Agent Skill::

    skills/<id>/SKILL.md      front matter (name, description, metadata) and a reader's page
    skills/<id>/skill.py      the function (formatted, one public function)
    skills/<id>/cases.jsonl   recorded cases, one JSON object per line, sorted by trajectory
                              id and hash
    skills/<id>/tools.json    the definitions of the tools the skill declares

Writes are deterministic (stable key order, trailing newline) so ``git diff skills/`` reads like
a code review, atomic (temp file + rename), and transactional: if writing or committing fails
part-way, every touched file is put back as it was and the index is reset for those paths.

Front matter metadata values are strings, as the Agent Skills format asks: ``version`` is a
semantic version (``"1.2.0"``; a whole number from an older library reads as ``N.0.0``), and
``deprecated_by`` (absent unless set) names the skill replacing this one.

Every commit is a version of the library: `SkillLibrary.load_at` and `SkillLibrary.ids_at` read
skills at any git revision (with ``git cat-file``, never touching the working tree), parsed
exactly like `SkillLibrary.load`, and `SkillLibrary.history` lists a skill's commits. Ids use
underscores (they are Python function names), where Agent Skills names use hyphens; an export
that renames them is the way to publish skills in that format.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from skillbank.errors import LibraryError, SkillNotFound
from skillbank.signature import read_signature
from skillbank.skill import (
    STAGES,
    Case,
    Skill,
    Stage,
    TestedSkill,
    content_hash,
    docstring_args,
)
from skillbank.versioning import HistoryEntry, Version, parse_version

__all__ = [
    "CONFTEST",
    "SKILL_FILES",
    "Restamp",
    "SkillLibrary",
    "StoredChange",
    "git",
    "skill_files",
]

JSON = Any

#: ``skills/conftest.py``: lets plain ``pytest skills/`` run every skill's checks.
CONFTEST = '''"""Run each skill's checks with plain ``pytest skills/`` (see `skillbank.testing`).

Every ``skills/<id>/`` folder gets the items ``validate``, ``replay[<trajectory>]``,
``properties`` and ``determinism``. Set ``SKILLBANK_PROVE_EXAMPLES`` to try more examples.
"""

from skillbank.testing import pytest_collect_file  # noqa: F401
'''

#: The files a skill folder holds.
SKILL_FILES = ("SKILL.md", "skill.py", "cases.jsonl", "tools.json")

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _json_line(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``git`` in ``root``; a failure raises LibraryError quoting git's own words.

    When no identity is configured (a fresh machine, a CI runner) commits are made as
    ``skillbank <skillbank@localhost>`` rather than failing.
    """
    env = dict(os.environ)
    if args[:1] == ("commit",) and not _has_identity(root):
        env.setdefault("GIT_AUTHOR_NAME", "skillbank")
        env.setdefault("GIT_AUTHOR_EMAIL", "skillbank@localhost")
        env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
        env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise LibraryError(
            "the `git` command was not found; install git (skillbank keeps skills in git)"
        ) from None
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise LibraryError(
            f"`git {' '.join(args[:3])}` failed in {root}: {' / '.join(said[-3:]) or 'no output'}"
        )
    return proc


def _has_identity(root: Path) -> bool:
    # The user's own identity (config or environment) wins; the fallback only avoids failing.
    if os.environ.get("GIT_AUTHOR_EMAIL") or os.environ.get("EMAIL"):
        return True
    try:
        proc = subprocess.run(
            ["git", "config", "--get", "user.email"], cwd=root, capture_output=True, check=False
        )
    except FileNotFoundError:
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def skill_files(
    skill: Skill | TestedSkill,
    *,
    version: str | Version,
    stage: str,
    deprecated_by: str | None = None,
) -> dict[str, str]:
    """The exact text of each file in a skill's folder (pure: same skill, same bytes).

    The metadata written (``version``, ``stage``, ``deprecated_by``) comes from the
    arguments, not from a `Skill`'s own fields; ``version`` is written in canonical form.

    Raises:
        ValueError: ``version`` is not a version (see `skillbank.versioning.parse_version`).
    """
    if isinstance(skill, TestedSkill):
        draft = skill.draft
        sid, description, source, tools = draft.id, draft.description, draft.source, draft.tools
        requires, cases, specs, notes = draft.requires, draft.cases, draft.tool_specs, draft.notes
        signature = skill.validated.signature
    else:
        sid, description, source, tools = skill.id, skill.description, skill.source, skill.tools
        requires, cases, specs, notes = skill.requires, skill.cases, skill.tool_specs, skill.notes
        signature = skill.signature
    ordered = sorted(cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256))
    metadata = {"version": str(parse_version(str(version))), "stage": stage}
    if deprecated_by:
        metadata["deprecated_by"] = deprecated_by
    metadata |= {
        "entry": "skill.py",
        "tools": " ".join(tools),
        "requires": " ".join(requires),
        "content_hash": f"sha256:{content_hash(source)}",
        "cases": str(len(ordered)),
    }
    front = {"name": sid, "description": description, "metadata": metadata}
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=4096)
    body = [f"# {sid}", "", description, ""]
    if deprecated_by:
        body += [
            f"**Deprecated:** use `{deprecated_by}` instead. This skill keeps running (its callers",
            "and the skills that require it keep working) until it is removed.",
            "",
        ]
    body += ["## Signature", "", "```python"]
    body += [signature.render(), "```", "", "## When to use it", ""]
    body.append("For tasks like these (the ones it was learned from):")
    body.append("")
    body += [f"- {' '.join(c.task.split())}" for c in ordered[:10]]
    if len(ordered) > 10:
        body.append(f"- ... and {len(ordered) - 10} more in `cases.jsonl`")
    body += ["", "## Arguments", ""]
    if signature.params:
        doc_args = docstring_args(signature.docstring)
        body += ["| name | type | description |", "| --- | --- | --- |"]
        for p in signature.params:
            text = doc_args.get(p.name, "").replace("|", "\\|")
            body.append(f"| `{p.name}` | `{p.annotation}` | {text} |")
    else:
        body.append("None.")
    body += ["", "## Tools", ""]
    for name in tools:
        spec = specs.get(name, {})
        fn = spec.get("function", {}) if isinstance(spec, Mapping) else {}
        desc = str(fn.get("description", "")).strip() if isinstance(fn, Mapping) else ""
        body.append(f"- `{name}`" + (f": {desc}" if desc else ""))
    body += ["", "## Provenance", ""]
    body.append(f"Learned from {len(ordered)} trajectory(ies):")
    body.append("")
    body += [f"- `{c.trajectory_id}` (sha256 `{c.trajectory_sha256[:16]}`)" for c in ordered]
    if notes:
        body += ["", "## Data flow", ""]
        body += [f"- {n}" for n in notes]
    return {
        "SKILL.md": f"---\n{head}---\n\n" + "\n".join(body) + "\n",
        "skill.py": source if source.endswith("\n") else source + "\n",
        "cases.jsonl": "".join(_json_line(c.to_json()) + "\n" for c in ordered),
        "tools.json": json.dumps(
            {k: specs[k] for k in sorted(specs)}, sort_keys=True, ensure_ascii=False, indent=2
        )
        + "\n",
    }


@dataclass(frozen=True)
class StoredChange:
    """One skill whose code `SkillLibrary.store` writes: only a tested skill can be one."""

    #: The skill, just checked (`skillbank.proving.check`).
    skill: TestedSkill
    #: The version written.
    version: Version
    #: The stage written.
    stage: Stage
    #: What happened, for the commit message: "added", "updated", "rolled back".
    action: str
    #: The skill replacing this one, when it is deprecated.
    deprecated_by: str | None = None


@dataclass(frozen=True)
class Restamp:
    """New metadata for a stored skill whose code does not change (`SkillLibrary.restamp`)."""

    #: The skill as stored (its code, cases and description are written back unchanged).
    skill: Skill
    #: The version written.
    version: Version
    #: The stage written.
    stage: Stage
    #: The skill replacing this one, when it is deprecated.
    deprecated_by: str | None = None


class SkillLibrary:
    """The ``skills/`` folder of a bank and the git repository holding it."""

    def __init__(
        self, root: Path, skills_dir: str = "skills", state_dir: str = ".skillbank"
    ) -> None:
        self.root = Path(root)
        self.dir = self.root / skills_dir
        self.rel = skills_dir
        #: Local, uncommitted state (the writers' lock) lives here.
        self.state = self.root / state_dir
        self._cache: dict[str, tuple[tuple[tuple[int, int, int], ...], Skill]] = {}

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the bank's writer lock: one writer at a time; other processes wait.

        Every command that commits takes it around its whole read-decide-write, so two
        writers never interleave commits or decide on a library the other is changing.
        """
        try:
            self.state.mkdir(exist_ok=True)
            fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LibraryError(
                f"cannot take the bank's lock under {self.state} ({exc}); check that the "
                "folder is writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # --- reading ------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """The ids of every skill folder, sorted."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if (p / "SKILL.md").is_file())

    def load(self, skill_id: str) -> Skill:
        """Read one skill back from its folder.

        A skill whose files have not changed since it was last read (same size and
        modification time of each file) comes from a cache, so repeated reads (recognition
        asks for the whole library per trajectory) skip the parsing.

        Raises:
            SkillNotFound: no folder with that id.
            LibraryError: the folder is broken; the message names the file and what to fix.
        """
        folder = self.dir / skill_id
        if not (set(skill_id) <= _ID_CHARS) or not (folder / "SKILL.md").is_file():
            raise SkillNotFound(skill_id, self.ids())
        try:
            stamps = tuple(
                (st.st_mtime_ns, st.st_size, st.st_ino)
                for st in (os.stat(folder / name) for name in SKILL_FILES)
            )
        except OSError:
            stamps = None
        cached = self._cache.get(skill_id)
        if stamps is not None and cached is not None and cached[0] == stamps:
            return cached[1]
        skill = _parse(skill_id, self.files(skill_id), f"{self.rel}/{skill_id}")
        if stamps is not None:
            self._cache[skill_id] = (stamps, skill)
        return skill

    def files(self, skill_id: str) -> dict[str, str]:
        """The text of each file in a skill's folder, as it is in the working tree.

        Raises:
            SkillNotFound: no folder with that id.
            LibraryError: a file cannot be read.
        """
        folder = self.dir / skill_id
        if not (set(skill_id) <= _ID_CHARS) or not (folder / "SKILL.md").is_file():
            raise SkillNotFound(skill_id, self.ids())
        try:
            return {name: (folder / name).read_text(encoding="utf-8") for name in SKILL_FILES}
        except (OSError, UnicodeDecodeError) as exc:
            raise LibraryError(f"{self.rel}/{skill_id}: cannot read the skill: {exc}") from None

    def load_all(self) -> list[Skill]:
        """Every skill, sorted by id (a broken folder raises LibraryError naming it)."""
        return [self.load(i) for i in self.ids()]

    # --- reading at a revision ----------------------------------------------------------

    def commit_of(self, rev: str) -> str:
        """The full sha of the commit a git revision (sha, branch, tag, ``HEAD~2``) names.

        Raises:
            LibraryError: it names no commit in the bank's repository.
        """
        found = None
        if rev and not rev.startswith("-"):
            proc = git(self.root, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False)
            found = proc.stdout.strip() if proc.returncode == 0 else None
        if not found:
            raise LibraryError(
                f"{rev!r} names no commit in the repository at {self.root}; give a git "
                "revision such as a commit sha, a branch or HEAD~1"
            )
        return found

    def files_at(self, skill_id: str, rev: str) -> dict[str, str] | None:
        """The text of each file of a skill at a git revision; None when it was not there.

        Raises:
            LibraryError: ``rev`` names no commit, or a file there is not UTF-8 text.
        """
        commit = self.commit_of(rev)
        if not set(skill_id) <= _ID_CHARS or not skill_id:
            return None
        blobs = self._blobs([f"{commit}:./{self.rel}/{skill_id}/{name}" for name in SKILL_FILES])
        if blobs[0] is None:
            return None
        try:
            return {
                name: (blob or b"").decode("utf-8")
                for name, blob in zip(SKILL_FILES, blobs, strict=True)
            }
        except UnicodeDecodeError as exc:
            raise LibraryError(
                f"{self.rel}/{skill_id} at {rev}: cannot read the skill: {exc}"
            ) from None

    def load_at(self, skill_id: str, rev: str) -> Skill | None:
        """A skill as it was at a git revision, parsed exactly like `load`.

        Returns None when the skill did not exist at ``rev``. The working tree is never
        touched.

        Raises:
            LibraryError: ``rev`` names no commit, or the skill's files there are broken.
        """
        texts = self.files_at(skill_id, rev)
        if texts is None:
            return None
        return _parse(skill_id, texts, f"{self.rel}/{skill_id} (at {rev})")

    def ids_at(self, rev: str) -> list[str]:
        """The ids of every skill folder at a git revision, sorted.

        Raises:
            LibraryError: ``rev`` names no commit.
        """
        commit = self.commit_of(rev)
        proc = git(self.root, "ls-tree", "-r", "--name-only", f"{commit}:./{self.rel}", check=False)
        if proc.returncode != 0:
            return []  # no skills folder in that commit
        found = set()
        for line in proc.stdout.splitlines():
            sid, _, name = line.partition("/")
            if name == "SKILL.md" and sid and set(sid) <= _ID_CHARS:
                found.add(sid)
        return sorted(found)

    def history(self, skill_id: str) -> list[HistoryEntry]:
        """Every commit on the current branch that changed a skill, newest first.

        Commits that removed the skill's folder are left out. An unknown id (or a bank
        with no commits yet) gives an empty list.
        """
        if not skill_id or not set(skill_id) <= _ID_CHARS:
            return []
        out = git(
            self.root,
            "log",
            "--format=%H%x09%cI%x09%s",
            "--",
            f"{self.rel}/{skill_id}",
            check=False,
        ).stdout
        rows = [line.split("\t", 2) for line in out.splitlines() if line.count("\t") >= 2]
        names = [
            f"{sha}:./{self.rel}/{skill_id}/{name}"
            for sha, _, _ in rows
            for name in ("SKILL.md", "skill.py")
        ]
        blobs = self._blobs(names)
        entries = []
        for n, (sha, date, subject) in enumerate(rows):
            meta_blob, source_blob = blobs[2 * n], blobs[2 * n + 1]
            if meta_blob is None:
                continue
            where = f"{self.rel}/{skill_id}/SKILL.md (at {sha[:12]})"
            try:
                md = _front_matter(meta_blob.decode("utf-8", "replace"), where).get("metadata")
            except LibraryError:
                md = None
            md = md if isinstance(md, dict) else {}
            raw = str(md.get("version", ""))
            try:
                version = str(parse_version(raw))
            except ValueError:
                version = raw  # a broken old version is shown as it was written
            source = (source_blob or b"").decode("utf-8", "replace")
            entries.append(
                HistoryEntry(
                    commit=sha,
                    date=date,
                    version=version,
                    stage=str(md.get("stage", "")),
                    content_hash=content_hash(source),
                    subject=subject,
                    deprecated_by=str(md["deprecated_by"]) if md.get("deprecated_by") else None,
                )
            )
        return entries

    def _blobs(self, names: Sequence[str]) -> list[bytes | None]:
        # One `git cat-file --batch` for many "<commit>:./<path>" names; None when absent.
        if not names:
            return []
        try:
            proc = subprocess.run(
                ["git", "cat-file", "--batch"],
                cwd=self.root,
                input="".join(f"{n}\n" for n in names).encode("utf-8"),
                capture_output=True,
                check=False,
            )
        except FileNotFoundError:
            raise LibraryError(
                "the `git` command was not found; install git (skillbank keeps skills in git)"
            ) from None
        if proc.returncode != 0:
            said = proc.stderr.decode("utf-8", "replace").strip() or "no output"
            raise LibraryError(f"`git cat-file --batch` failed in {self.root}: {said}")
        out, pos = proc.stdout, 0
        found: list[bytes | None] = []
        for _ in names:
            end = out.index(b"\n", pos)
            header, pos = out[pos:end], end + 1
            fields = header.rsplit(b" ", 2)
            if len(fields) != 3 or not fields[2].isdigit():
                found.append(None)  # "<name> missing" or "<name> ambiguous"
                continue
            size = int(fields[2])
            found.append(out[pos : pos + size] if fields[1] == b"blob" else None)
            pos += size + 1
        return found

    # --- writing ------------------------------------------------------------------------

    def check_branch_name(self, name: str) -> None:
        """Raise LibraryError unless ``name`` is a valid git branch name."""
        proc = git(self.root, "check-ref-format", "--branch", name, check=False)
        if name.startswith("-") or proc.returncode != 0:
            raise LibraryError(
                f"{name!r} is not a valid git branch name; pass --branch auto, current, or a "
                "name like skillbank/new-skills"
            )

    def enter_branch(
        self, wanted: str, new_hashes: Sequence[str]
    ) -> tuple[str | None, Callable[[], None]]:
        """Put HEAD on the branch a learn commit goes to; return its name and an undo.

        ``wanted`` is "current" (the checked-out branch), "auto" (the current branch when
        the bank has no commit yet or the branch name starts with ``skillbank/``; otherwise
        a new branch ``skillbank/learn-<UTC yyyymmdd-HHMMSS>-<8 hex>`` made from HEAD, the
        hex being sha256 over the sorted ``new_hashes``), or a branch name (created from HEAD
        if missing; an existing one must point to HEAD). Only ever switches to a branch that
        points to HEAD's commit (or makes one from it), so the working tree, dirty files
        included, is never touched.

        Raises:
            LibraryError: the named branch exists and points elsewhere.
        """
        root = self.root
        current = git(root, "symbolic-ref", "--short", "-q", "HEAD", check=False).stdout.strip()
        head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).stdout.strip()
        if wanted == "current":
            return current or None, _nothing
        if wanted == "auto":
            if not head or current.startswith("skillbank/"):
                return current or None, _nothing
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            digest = hashlib.sha256("\n".join(sorted(set(new_hashes))).encode()).hexdigest()
            target = base = f"skillbank/learn-{stamp}-{digest[:8]}"
            n = 2
            while _branch_commit(root, target) is not None:
                target, n = f"{base}-{n}", n + 1
        else:
            target = wanted
            if target == current:
                return current, _nothing
        points_to = _branch_commit(root, target)
        if points_to is not None and (not head or points_to != head):
            raise LibraryError(
                f"branch {target!r} exists but points to {points_to[:12]}, not to HEAD "
                f"({head[:12] or 'no commit yet'}), so switching to it would change files in "
                f"the working tree; check it out yourself (`git switch {target}`) and learn "
                "again, or pass --branch current or a new branch name"
            )
        git(root, "switch", "-q", *(() if points_to else ("-c",)), target)

        def undo() -> None:
            if current and head:
                git(root, "switch", "-q", current, check=False)
            elif current:  # an unborn branch: only the symbolic ref moved
                git(root, "symbolic-ref", "HEAD", f"refs/heads/{current}", check=False)
            else:
                git(root, "switch", "-q", "--detach", head, check=False)
            if points_to is None and head:
                git(root, "branch", "-q", "-D", target, check=False)

        return target, undo

    @contextmanager
    def _transaction(self, folders: Sequence[Path]) -> Iterator[None]:
        # Snapshot every file we may touch; on any failure put the bytes back and unstage.
        before: dict[Path, bytes | None] = {}
        for folder in folders:
            for name in SKILL_FILES:
                path = folder / name
                before[path] = path.read_bytes() if path.exists() else None
        try:
            yield
        except BaseException:
            for path, data in before.items():
                try:
                    if data is None:
                        path.unlink(missing_ok=True)
                    else:
                        _atomic_write(path, data)
                except OSError:
                    pass
            for folder in folders:
                if folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()
            rels = [str(f.relative_to(self.root)) for f in folders]
            git(self.root, "reset", "-q", "--", *rels, check=False)
            raise

    def store(self, changes: Sequence[StoredChange], message: str) -> str | None:
        """Write tested skills and commit them in one commit; return its sha, or None if
        unchanged.

        Only a `TestedSkill` can be stored: code reaches the library through
        `skillbank.proving.check`, and the type checker holds every caller to that.

        Args:
            changes: The skills to write, with their version, stage and deprecation.
            message: The commit message (provenance: what changed and from which trajectories).

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        return self._commit(
            [
                (
                    c.skill.draft.id,
                    skill_files(
                        c.skill, version=c.version, stage=c.stage, deprecated_by=c.deprecated_by
                    ),
                )
                for c in changes
            ],  # fmt: skip
            message,
        )

    def restamp(self, changes: Sequence[Restamp], message: str) -> str | None:
        """Rewrite stored skills' metadata (stage, version, deprecation) and commit.

        The code, cases and description are written back as they were read, so no untested
        code can enter this way. Returns the commit's sha, or None if nothing changed.

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        return self._commit(
            [
                (
                    c.skill.id,
                    skill_files(
                        c.skill, version=c.version, stage=c.stage, deprecated_by=c.deprecated_by
                    ),
                )
                for c in changes
            ],  # fmt: skip
            message,
        )

    def _commit(self, written: Sequence[tuple[str, dict[str, str]]], message: str) -> str | None:
        skills = written
        if not skills:
            return None
        ids = [sid for sid, _ in skills]
        folders = [self.dir / sid for sid in ids]
        rels = [f"{self.rel}/{sid}" for sid in ids]
        # Never fold someone's uncommitted edit into our commit: its version bump and
        # message would describe a different change than the one committed.
        dirty = git(
            self.root, "status", "--porcelain", "--untracked-files=all", "--", *rels, check=False
        ).stdout.splitlines()
        if dirty:
            where = dirty[0][3:].strip()
            raise LibraryError(
                f"{where} has uncommitted changes; commit them (so their version bump is "
                f"recorded) or discard them (`git checkout -- {where}`), then try again"
            )
        with self._transaction(folders):
            try:
                for sid, files in skills:
                    folder = self.dir / sid
                    folder.mkdir(parents=True, exist_ok=True)
                    for name, content in files.items():
                        _atomic_write(folder / name, content.encode("utf-8"))
            except OSError as exc:
                raise LibraryError(
                    f"writing skills under {self.dir} failed ({exc}); nothing was changed"
                ) from None
            ignored = git(self.root, "check-ignore", "--", *rels, check=False).stdout.split()
            if ignored:
                raise LibraryError(
                    f"{ignored[0]} is ignored by git here (a .gitignore rule), so skills "
                    "cannot be committed; remove that rule, or create the bank elsewhere "
                    "with `skillbank init DIR`"
                )
            if (self.dir / "conftest.py").is_file():
                rels.append(f"{self.rel}/conftest.py")  # committed with the first skills
            git(self.root, "add", "--", *rels)
            staged = git(self.root, "diff", "--cached", "--quiet", "--", *rels, check=False)
            if staged.returncode == 0:
                return None  # byte-identical to what is committed: no empty commit
            try:
                git(self.root, "commit", "-q", "-m", message, "--", *rels)
            except LibraryError as exc:
                raise LibraryError(
                    f"{exc}. The skills folder and index were restored as they were."
                ) from None
        return git(self.root, "rev-parse", "HEAD").stdout.strip()


def _parse(skill_id: str, text: Mapping[str, str], rel: str) -> Skill:
    """Build a `Skill` from the texts of its four files; ``rel`` names it in errors."""
    meta = _front_matter(text["SKILL.md"], f"{rel}/SKILL.md")
    md = meta.get("metadata") or {}
    if meta.get("name") != skill_id or not isinstance(md, dict):
        raise LibraryError(
            f"{rel}/SKILL.md: front matter 'name' must be {skill_id!r} and 'metadata' a "
            f"mapping (got name={meta.get('name')!r})"
        )
    try:
        version = str(parse_version(str(md.get("version", ""))))
    except ValueError:
        raise LibraryError(
            f"{rel}/SKILL.md: metadata.version must be a version like '1.2.0' (or a whole "
            f"number, read as N.0.0), got {md.get('version')!r}"
        ) from None
    stage = next((s for s in STAGES if s == md.get("stage")), None)
    if stage is None:
        raise LibraryError(
            f"{rel}/SKILL.md: metadata.stage must be one of {', '.join(STAGES)}, "
            f"got {md.get('stage')!r}"
        )
    deprecated_by = md.get("deprecated_by")
    if deprecated_by is not None and (
        not isinstance(deprecated_by, str)
        or not deprecated_by
        or not set(deprecated_by) <= _ID_CHARS
        or deprecated_by == skill_id
    ):
        raise LibraryError(
            f"{rel}/SKILL.md: metadata.deprecated_by must be the id of another skill, "
            f"got {deprecated_by!r}; remove it to undo the deprecation"
        )
    cases = []
    # Split on "\n" only: str.splitlines() also splits on U+2028, U+0085 and friends,
    # which JSON keeps raw inside strings (we write with ensure_ascii=False).
    for n, line in enumerate(text["cases.jsonl"].split("\n"), start=1):
        if not line.strip():
            continue
        try:
            cases.append(Case.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LibraryError(f"{rel}/cases.jsonl:{n}: not a valid case ({exc!r})") from None
    try:
        specs = json.loads(text["tools.json"])
        assert isinstance(specs, dict)
    except (ValueError, AssertionError):
        raise LibraryError(f"{rel}/tools.json: must be a JSON object of tool definitions") from None
    source = text["skill.py"]
    try:
        signature = read_signature(source)
    except Exception as exc:
        raise LibraryError(f"{rel}/skill.py: {exc}") from None
    _, heading, flow = text["SKILL.md"].partition("## Data flow")
    notes = tuple(line[2:] for line in flow.split("\n") if heading and line.startswith("- "))
    return Skill(
        id=skill_id,
        description=str(meta.get("description", "")),
        version=version,
        stage=stage,
        source=source,
        signature=signature,
        tools=tuple(str(md.get("tools", "")).split()),
        requires=tuple(str(md.get("requires", "")).split()),
        cases=tuple(cases),
        tool_specs=specs,
        notes=notes,
        deprecated_by=deprecated_by,
    )


def _front_matter(text: str, where: str) -> dict[str, JSON]:
    if not text.startswith("---\n"):
        raise LibraryError(f"{where}: must start with '---' front matter (name, description)")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise LibraryError(f"{where}: the front matter is not closed by a '---' line")
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        raise LibraryError(f"{where}: the front matter is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LibraryError(f"{where}: the front matter must be a mapping")
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _nothing() -> None:
    pass


def _branch_commit(root: Path, name: str) -> str | None:
    """The commit a local branch points to, or None when there is no such branch."""
    proc = git(root, "rev-parse", "--verify", "-q", f"refs/heads/{name}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None
