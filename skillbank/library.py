"""The skill library: one folder per skill under ``skills/``, kept in git.

Each skill is a folder named by its id, laid out like an Agent Skill::

    skills/<id>/SKILL.md      front matter (name, description, metadata) and a reader's page
    skills/<id>/skill.py      the function (formatted, one public function)
    skills/<id>/cases.jsonl   recorded cases, one JSON object per line, sorted by trajectory
                              id and hash
    skills/<id>/tools.json    the definitions of the tools the skill declares
    skills/<id>/patterns.json how its arguments appear in its task texts, learned from the
                              cases (`skillbank.patterns`): rebuilt with every write, so it
                              always follows the cases; optional when reading

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

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from skillbank.errors import LibraryError, SkillNotFound, storage_error
from skillbank.patterns import (
    PATTERNS_FILE,
    TaskPatterns,
    cases_digest,
    learn_patterns,
    parse_patterns,
    render_patterns,
)
from skillbank.signature_cache import CACHE_FILE, SignatureCache
from skillbank.skill import (
    STAGES,
    Case,
    Skill,
    Stage,
    TestedSkill,
    Version,
    content_hash,
    docstring_args,
    parse_version,
)
from skillbank.trajectory import ToolSpec

if TYPE_CHECKING:
    from skillbank.versioning import HistoryEntry

__all__ = [
    "ALIAS_FILE",
    "CONFTEST",
    "SKILL_FILES",
    "WRITTEN_FILES",
    "BrokenSkill",
    "Branch",
    "Commit",
    "Restamp",
    "SkillLibrary",
    "StoredChange",
    "alias_files",
    "atomic_write",
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

#: The files a skill folder must hold.
SKILL_FILES = ("SKILL.md", "skill.py", "cases.jsonl", "tools.json")
#: Every file a write of a skill folder produces (`skill_files`): the required ones, and the
#: task patterns derived from its cases (a folder from before them still loads).
WRITTEN_FILES = (*SKILL_FILES, PATTERNS_FILE)
#: The one file of an alias folder: ``skills/<old id>/alias.json`` names the skill a renamed
#: id now stands for (`alias_files`). A folder holds a skill or an alias, never both.
ALIAS_FILE = "alias.json"
#: Every file a write of a folder may replace or remove.
_FOLDER_FILES = (*WRITTEN_FILES, ALIAS_FILE)
#: The longest chain of aliases followed (a renamed skill renamed again ...).
_MAX_ALIAS_HOPS = 16

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _json_line(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def git(
    root: Path,
    *args: str,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git`` in ``root``; a failure raises LibraryError quoting git's own words.

    ``input`` goes to git's stdin (long messages and path lists never go on the command
    line); ``env`` adds to the environment (e.g. ``GIT_INDEX_FILE``). When no identity is
    configured (a fresh machine, a CI runner) commits are made as
    ``skillbank <skillbank@localhost>`` rather than failing.
    """
    env = {**os.environ, **(env or {})}
    if args[:1] in (("commit",), ("commit-tree",)) and not _has_identity(root):
        env.setdefault("GIT_AUTHOR_NAME", "skillbank")
        env.setdefault("GIT_AUTHOR_EMAIL", "skillbank@localhost")
        env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
        env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=root,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            check=False,
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
    version: Version,
    stage: str,
    deprecated_by: str | None = None,
    query_tools: Collection[str] = (),
    command_tools: Collection[str] = (),
    pinned: str | None = None,
) -> dict[str, str]:
    """The exact text of each file in a skill's folder (pure: same skill, same bytes).

    The metadata written (``version``, ``stage``, ``deprecated_by``) comes from the
    arguments, not from a `Skill`'s own fields; ``version`` is written in canonical form.
    ``pinned`` (a reviewer's reason for the stage) is the argument, or for None a `Skill`'s
    own; "" writes none.
    ``SKILL.md`` says of each tool whether it is a query or a command and why
    (`skillbank.compiler.effects`; ``query_tools`` and ``command_tools`` are the bank's
    configuration). ``patterns.json`` is learned from the cases here
    (`skillbank.patterns.learn_patterns`), so every write keeps it in step with them.
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
    metadata = {"version": str(version), "stage": stage}
    if pinned is None and isinstance(skill, Skill):
        pinned = skill.pinned  # "" writes no pin
    if pinned:
        metadata["pinned"] = " ".join(pinned.split())
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
    from skillbank.compiler.effects import classify_tools  # only when writing a skill

    effects = classify_tools(tools, specs, query_tools=query_tools, command_tools=command_tools)
    for name in tools:
        spec = specs.get(name)
        desc = spec.description.strip() if spec is not None else ""
        effect = effects[name]
        body.append(f"- `{name}` ({effect.effect}; {effect.why})" + (f": {desc}" if desc else ""))
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
            {k: specs[k].to_openai() for k in sorted(specs)},
            sort_keys=True,
            ensure_ascii=False,
            indent=2,
        )
        + "\n",
        PATTERNS_FILE: render_patterns(learn_patterns(sid, signature, ordered, specs)),
    }


def alias_files(old_id: str, new_id: str, reason: str) -> dict[str, str]:
    """The files of the folder an old id leaves behind: ``alias.json`` naming its successor.

    The old id stays callable everywhere a skill id is taken (run, tools, MCP), as the
    skill it now stands for; listings and search leave it out.
    """
    data = {"alias_of": new_id, "reason": " ".join(reason.split())}
    return {ALIAS_FILE: json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2) + "\n"}


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
    #: The reviewer's pin of the stage (`skillbank.skill.Skill.pinned`): None keeps the
    #: stored skill's, "" removes it.
    pinned: str | None = None


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
    #: The reviewer's pin of the stage: None keeps the stored skill's, "" removes it.
    pinned: str | None = None


@dataclass(frozen=True)
class Branch:
    """Where a commit goes (`SkillLibrary.branch_for`)."""

    #: The branch's name (None: a detached HEAD, committed where it is).
    name: str | None
    #: True: the checked-out branch, whose working tree is written and committed; False: a
    #: branch written with git plumbing, leaving HEAD, index and working tree as they are.
    checked_out: bool
    #: The commit the change goes on top of (None: the bank has no commit yet).
    base: str | None
    #: True when the branch does not exist yet (its commit creates it).
    new: bool
    #: The branch that was checked out when this one was chosen: what a review of this
    #: branch compares against (None: HEAD was detached, or this is that branch).
    source: str | None = None

    def after(self, commit: str | None) -> Branch:
        """The same branch once ``commit`` landed on it (the next commit goes on top)."""
        if commit is None or self.checked_out:
            return self
        return replace(self, base=commit, new=False)


class Commit(str):
    """A commit's sha (it is the string), and the branch it landed on.

    A plain ``str`` to every caller that only wants the sha; ``branch`` and ``checked_out``
    tell a reader where to look: the working tree's branch, or a review branch that was
    written without checking it out.
    """

    #: The branch the commit is on (None: a detached HEAD).
    branch: str | None
    #: True when that branch is the checked-out one.
    checked_out: bool

    def __new__(cls, sha: str, branch: Branch | None) -> Commit:
        made = super().__new__(cls, sha)
        made.branch = branch.name if branch else None
        made.checked_out = branch.checked_out if branch else True
        return made


@dataclass(frozen=True)
class BrokenSkill:
    """A skill folder that does not load (`SkillLibrary.scan`)."""

    #: The folder's name.
    id: str
    #: What is wrong, naming the file, and what to fix.
    error: str


class SkillLibrary:
    """The ``skills/`` folder of a bank and the git repository holding it."""

    def __init__(
        self,
        root: Path,
        skills_dir: str = "skills",
        state_dir: str = ".skillbank",
        *,
        query_tools: Collection[str] = (),
        command_tools: Collection[str] = (),
        replica: str = "",
    ) -> None:
        self.root = Path(root)
        #: This replica's name: review branches it writes are ``skillbank/<replica>/...``, so
        #: learners on different replicas of one remote never write the same branch.
        self.replica = replica
        #: The bank's own word on which tools are queries and commands (``SKILL.md`` says).
        self.query_tools = tuple(query_tools)
        self.command_tools = tuple(command_tools)
        self.dir = self.root / skills_dir
        self.rel = skills_dir
        #: Local, uncommitted state (the writers' lock) lives here.
        self.state = self.root / state_dir
        self._cache: dict[str, tuple[tuple[tuple[int, int, int], ...], Skill]] = {}
        #: Signatures by source hash, so an unchanged library loads without libcst.
        self.signatures = SignatureCache(self.state / CACHE_FILE)
        self._scanning = False

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
            raise storage_error(exc, f"the bank's lock under {self.state}") or LibraryError(
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
            target = self.resolve(skill_id)
            if target == skill_id:
                raise SkillNotFound(skill_id, self.ids())
            return self.load(target)
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
        skill = _parse(skill_id, self.files(skill_id), f"{self.rel}/{skill_id}", self.signatures)
        if not self._scanning:  # a scan saves the cache once, at its end
            self.signatures.save()
        if stamps is not None:
            self._cache[skill_id] = (stamps, skill)
        return skill

    def alias_target(self, alias: str) -> str | None:
        """The id an alias folder names (``alias.json``), or None when ``alias`` is none.

        Raises:
            LibraryError: the alias file is broken; the message names it and what to fix.
        """
        if not alias or not set(alias) <= _ID_CHARS:
            return None
        path = self.dir / alias / ALIAS_FILE
        if (self.dir / alias / "SKILL.md").is_file() or not path.is_file():
            return None
        where = f"{self.rel}/{alias}/{ALIAS_FILE}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise LibraryError(f"{where}: cannot read the alias: {exc}") from None
        target = data.get("alias_of") if isinstance(data, dict) else None
        if not isinstance(target, str) or not target or not set(target) <= _ID_CHARS:
            raise LibraryError(
                f'{where}: "alias_of" must name a skill id (lower-case letters, digits and '
                f'underscores), e.g. {{"alias_of": "new_id"}}'
            )
        return target

    def aliases(self) -> dict[str, str]:
        """Every alias folder's old id and the id it names, sorted; broken ones left out."""
        if not self.dir.is_dir():
            return {}
        found = {}
        for folder in sorted(self.dir.iterdir()):
            if (folder / ALIAS_FILE).is_file():
                try:
                    target = self.alias_target(folder.name)
                except LibraryError:
                    continue
                if target is not None:
                    found[folder.name] = target
        return found

    def resolve(self, skill_id: str) -> str:
        """The id ``skill_id`` stands for: itself, or where its chain of aliases ends.

        Raises:
            LibraryError: an alias file is broken, or aliases go round in a circle.
        """
        seen = [skill_id]
        while (target := self.alias_target(seen[-1])) is not None:
            if target in seen or len(seen) > _MAX_ALIAS_HOPS:
                raise LibraryError(
                    f"the aliases of {skill_id!r} go round in a circle or too far "
                    f"({' -> '.join([*seen, target])}); fix {self.rel}/{seen[-1]}/{ALIAS_FILE}"
                )
            seen.append(target)
        return seen[-1]

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

    def patterns(self, skill: Skill) -> TaskPatterns:
        """A skill's task patterns: its ``patterns.json`` as reviewed, or, for a folder without
        a readable one (written before patterns existed) or one learned from other cases (a
        hand edit of ``cases.jsonl``), learned from its cases now."""
        path = self.dir / skill.id / PATTERNS_FILE
        try:
            found = parse_patterns(path.read_text(encoding="utf-8"), skill.id)
        except (OSError, UnicodeDecodeError):
            found = None
        if found is not None and found.cases == cases_digest(skill.cases):
            return found
        return learn_patterns(skill.id, skill.signature, skill.cases, skill.tool_specs)

    def scan(self) -> tuple[list[Skill], list[BrokenSkill]]:
        """Every skill that loads, sorted by id, and every folder that does not, with why.

        One broken folder (a syntax error in ``skill.py``, a missing ``cases.jsonl``) must
        not take the bank down: the others are still listed, searched, offered and learned
        into, and the broken one is reported (`skillbank list`, the gate).
        """
        skills: list[Skill] = []
        broken: list[BrokenSkill] = []
        self._scanning = True
        try:
            for sid in self.ids():
                try:
                    skills.append(self.load(sid))
                except LibraryError as exc:
                    broken.append(BrokenSkill(sid, str(exc)))
        finally:
            self._scanning = False
            if not broken:  # every source was read: the others are of edits since undone
                self.signatures.keep_only_used()
            self.signatures.save()
        return skills, broken

    def load_all(self) -> list[Skill]:
        """Every skill that loads, sorted by id; broken folders are left out (see `scan`)."""
        return self.scan()[0]

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
        from skillbank.versioning import HistoryEntry  # signatures (libcst) come with it

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

    def branch_for(self, wanted: str, verb: str, salt: Sequence[str] = ()) -> Branch:
        """Where a change made by ``verb`` (``"learn"``, ``"stages"``, ...) is committed.

        ``wanted`` is:

        - ``"current"``: the checked-out branch; the working tree is written and committed.
        - ``"auto"``: the checked-out branch when the bank has no commit yet or the branch's
          name starts with ``skillbank/`` (a review branch being continued); otherwise a new
          branch ``skillbank/<verb>-<UTC yyyymmdd-HHMMSS>-<8 hex>`` from HEAD, the hex being
          sha256 over the sorted ``salt`` (the new trajectories' hashes, say); with a
          `replica` name, ``skillbank/<replica>/<verb>-...``.
        - a branch name: that branch; created from HEAD if missing, and an existing one must
          point to HEAD (the change was decided on the working tree, which is HEAD's).

        A branch other than the checked-out one is written with git plumbing: HEAD, the
        index and the working tree never change, and the branch appears only when its commit
        does. Commit hooks do not run there; the gate runs on the pull request instead.

        Raises:
            LibraryError: an invalid name, or a named branch that points elsewhere.
        """
        root = self.root
        current = git(root, "symbolic-ref", "--short", "-q", "HEAD", check=False).stdout.strip()
        head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).stdout.strip()
        here = Branch(current or None, checked_out=True, base=head or None, new=False)
        if wanted == "current":
            return here
        if wanted == "auto":
            if not head or current.startswith("skillbank/"):
                return here
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            digest = hashlib.sha256("\n".join(sorted(set(salt))).encode()).hexdigest()
            where = f"{self.replica}/" if self.replica else ""
            target = base = f"skillbank/{where}{verb}-{stamp}-{digest[:8]}"
            n = 2
            while _branch_commit(root, target) is not None:
                target, n = f"{base}-{n}", n + 1
            return Branch(target, checked_out=False, base=head, new=True, source=current or None)
        self.check_branch_name(wanted)
        if wanted == current or not head:
            if wanted != current:
                raise LibraryError(
                    f"the bank has no commit yet, so there is nothing to branch {wanted!r} "
                    "from; commit once on the current branch (--branch current) first"
                )
            return here
        points_to = _branch_commit(root, wanted)
        if points_to is not None and points_to != head:
            raise LibraryError(
                f"branch {wanted!r} exists but points to {points_to[:12]}, not to HEAD "
                f"({head[:12]}); this change was decided on the working tree, so it cannot go "
                f"on top of other skills; check it out yourself (`git switch {wanted}`) and "
                "run again, or pass --branch auto, current or a new branch name"
            )
        return Branch(
            wanted, checked_out=False, base=head, new=points_to is None, source=current or None
        )

    @contextmanager
    def _transaction(self, folders: Sequence[Path]) -> Iterator[None]:
        # Snapshot every file we may touch; on any failure put the bytes back and unstage.
        before: dict[Path, bytes | None] = {}
        for folder in folders:
            for name in _FOLDER_FILES:
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
                        path.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write(path, data)
                except OSError:
                    pass
            for folder in folders:
                if folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()
            # The folders, and the conftest.py a first commit would have added with them.
            rels = "".join(f"{f.relative_to(self.root)}\n" for f in folders)
            rels += f"{self.rel}/conftest.py\n"
            git(self.root, "reset", "-q", "--pathspec-from-file=-", input=rels, check=False)
            raise

    def store(
        self, changes: Sequence[StoredChange], message: str, *, branch: Branch | None = None
    ) -> Commit | None:
        """Write tested skills and commit them in one commit; return its sha, or None if
        unchanged.

        Only a `TestedSkill` can be stored: code reaches the library through
        `skillbank.proving.check`, and the type checker holds every caller to that.

        Args:
            changes: The skills to write, with their version, stage and deprecation.
            message: The commit message (provenance: what changed and from which trajectories).
            branch: Where the commit goes (`branch_for`); None: the checked-out branch.

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        written: list[tuple[str, Mapping[str, str] | None]] = [
            (c.skill.draft.id,
             skill_files(c.skill, version=c.version, stage=c.stage, deprecated_by=c.deprecated_by,
                         query_tools=self.query_tools, command_tools=self.command_tools,
                         pinned=self._pin(c.skill.draft.id, c.pinned)))
            for c in changes
        ]  # fmt: skip
        return self._commit(written, message, branch)

    def rename(
        self, change: StoredChange, old_id: str, message: str, *, branch: Branch | None = None
    ) -> Commit | None:
        """Write a renamed skill under its new id and leave its old id as an alias of it
        (`alias_files`), in one commit.

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        new_id = change.skill.draft.id
        written: list[tuple[str, Mapping[str, str] | None]] = [
            (new_id,
             skill_files(change.skill, version=change.version, stage=change.stage,
                         deprecated_by=change.deprecated_by, query_tools=self.query_tools,
                         command_tools=self.command_tools, pinned=change.pinned or "")),
            (old_id, alias_files(old_id, new_id, f"renamed to {new_id}")),
        ]  # fmt: skip
        return self._commit(written, message, branch)

    def remove(
        self, skill_ids: Sequence[str], message: str, *, branch: Branch | None = None
    ) -> Commit | None:
        """Delete skills' folders in one commit; return it (None when none of them exists).

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        return self._commit([(sid, None) for sid in skill_ids], message, branch)

    def restamp(
        self, changes: Sequence[Restamp], message: str, *, branch: Branch | None = None
    ) -> Commit | None:
        """Rewrite stored skills' metadata (stage, version, deprecation) and commit.

        The code, cases and description are written back as they were read, so no untested
        code can enter this way. Returns the commit's sha, or None if nothing changed.

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        written: list[tuple[str, Mapping[str, str] | None]] = [
            (c.skill.id,
             skill_files(c.skill, version=c.version, stage=c.stage, deprecated_by=c.deprecated_by,
                         query_tools=self.query_tools, command_tools=self.command_tools,
                         pinned=self._pin(c.skill.id, c.pinned)))
            for c in changes
        ]  # fmt: skip
        return self._commit(written, message, branch)

    def _pin(self, skill_id: str, wanted: str | None) -> str:
        """The pin to write ("" for none): ``wanted``, or, for None, the stored skill's, so
        every write that is not a reviewer's decision keeps it."""
        if wanted is not None:
            return wanted
        try:
            return self.load(skill_id).pinned or ""
        except (SkillNotFound, LibraryError):
            return ""

    def _commit(
        self,
        written: Sequence[tuple[str, Mapping[str, str] | None]],
        message: str,
        branch: Branch | None,
    ) -> Commit | None:
        """Commit ``written`` (skill id -> its files, or None to delete its folder)."""
        if not written:
            return None
        rels = [f"{self.rel}/{sid}" for sid, _ in written]
        # Never fold someone's uncommitted edit into our commit: its version bump and
        # message would describe a different change than the one committed (and on another
        # branch, the change was decided on the edited files, not on HEAD's).
        # ``status --porcelain`` names paths from the repository's top, which is above the
        # bank when the bank is a folder of a larger repository.
        prefix = git(self.root, "rev-parse", "--show-prefix", check=False).stdout.strip()
        dirty = self._under([prefix + r for r in rels], git(
            self.root, "status", "--porcelain", "--untracked-files=all", "--", self.rel,
            check=False,
        ).stdout.splitlines(), column=3)  # fmt: skip
        if dirty:
            where = dirty[0]
            raise LibraryError(
                f"{where} has uncommitted changes; commit them (so their version bump is "
                f"recorded) or discard them (`git checkout -- {where}`), then try again"
            )
        ignored = git(
            self.root, "check-ignore", "--stdin", input="\n".join(rels) + "\n", check=False
        ).stdout.split()
        if ignored:
            raise LibraryError(
                f"{ignored[0]} is ignored by git here (a .gitignore rule), so skills "
                "cannot be committed; remove that rule, or create the bank elsewhere "
                "with `skillbank init DIR`"
            )
        if branch is None or branch.checked_out:
            sha = self._commit_here(written, message, rels)
        else:
            sha = self._commit_elsewhere(written, message, rels, branch)
        return Commit(sha, branch) if sha is not None else None

    @staticmethod
    def _under(rels: Sequence[str], lines: Sequence[str], column: int = 0) -> list[str]:
        """The lines whose path (from ``column`` on) is one of ``rels`` or inside one.

        Git lists a whole folder cheaply; filtering here keeps thousands of paths off the
        command line.
        """
        wanted = set(rels)
        out = []
        for line in lines:
            path = line[column:].strip().strip('"')
            parts = path.split("/")
            if any("/".join(parts[:n]) in wanted for n in range(1, len(parts) + 1)):
                out.append(path)
        return out

    def _commit_here(
        self,
        written: Sequence[tuple[str, Mapping[str, str] | None]],
        message: str,
        rels: list[str],
    ) -> str | None:
        """Write the working tree and commit on the checked-out branch."""
        with self._transaction([self.dir / sid for sid, _ in written]):
            try:
                for sid, files in written:
                    folder = self.dir / sid
                    # The files we write replace the folder's (a skill's, an alias's); a
                    # stray file of someone else's stays for a human.
                    for name in _FOLDER_FILES:
                        if files is None or name not in files:
                            (folder / name).unlink(missing_ok=True)
                    if files is None:
                        with contextlib.suppress(OSError):
                            folder.rmdir()
                        continue
                    folder.mkdir(parents=True, exist_ok=True)
                    for name, content in files.items():
                        atomic_write(folder / name, content.encode("utf-8"))
            except OSError as exc:
                raise storage_error(
                    exc, f"skills under {self.dir}", "nothing was changed"
                ) or LibraryError(
                    f"writing skills under {self.dir} failed ({exc}); nothing was changed"
                ) from None
            if (self.dir / "conftest.py").is_file():
                rels.append(f"{self.rel}/conftest.py")  # committed with the first skills
            # Paths and message go through stdin and a file: a batch of thousands of skills
            # must not meet the command line's length limit.
            paths = "".join(f"{r}\n" for r in rels)
            git(self.root, "add", "--all", "--pathspec-from-file=-", input=paths)
            staged = git(
                self.root, "diff", "--cached", "--name-only", "--relative", "--", self.rel
            ).stdout
            if not self._under(rels, staged.splitlines()):
                return None  # byte-identical to what is committed: no empty commit
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".msg") as msg:
                msg.write(message)
                msg.flush()
                try:
                    git(self.root, "commit", "-q", "-F", msg.name, "--pathspec-from-file=-",
                        input=paths)  # fmt: skip
                except LibraryError as exc:
                    raise LibraryError(
                        f"{exc}. The skills folder and index were restored as they were."
                    ) from None
        return git(self.root, "rev-parse", "HEAD").stdout.strip()

    def _commit_elsewhere(
        self,
        written: Sequence[tuple[str, Mapping[str, str] | None]],
        message: str,
        rels: list[str],
        branch: Branch,
    ) -> str | None:
        """Commit on a branch that is not checked out, with plumbing, in a private index.

        The new tree is the base commit's with the written skills' folders replaced; the
        branch moves only if it still points where it did (``update-ref`` compares and
        swaps), so a concurrent writer is refused, never overwritten.
        """
        assert branch.name is not None and branch.base is not None  # branch_for's contract
        # Plumbing names paths from the repository's top: run it there, with full paths.
        top = Path(git(self.root, "rev-parse", "--show-toplevel").stdout.strip())
        prefix = git(self.root, "rev-parse", "--show-prefix").stdout.strip()
        full = [prefix + r for r in rels]
        with tempfile.TemporaryDirectory(prefix="skillbank-commit-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(top, "read-tree", branch.base, env=env)
            listed = git(top, "ls-files", "-z", "--", prefix + self.rel, env=env).stdout
            old = self._under(full, listed.split("\0"))
            blobs: list[tuple[str, str]] = []  # (repository path, file holding its bytes)
            for n, (sid, files) in enumerate(written):
                for name, content in (files or {}).items():
                    held = Path(tmp) / f"{n}-{name}"
                    held.write_bytes(content.encode("utf-8"))
                    blobs.append((f"{prefix}{self.rel}/{sid}/{name}", str(held)))
            conftest = self.dir / "conftest.py"
            at_base = git(
                top, "cat-file", "-e", f"{branch.base}:{prefix}{self.rel}/conftest.py",
                check=False,
            )  # fmt: skip
            if at_base.returncode != 0 and conftest.is_file():
                blobs.append((f"{prefix}{self.rel}/conftest.py", str(conftest)))
            shas = git(
                top, "hash-object", "-w", "--stdin-paths",
                input="".join(f"{f}\n" for _, f in blobs),
            ).stdout.split()  # fmt: skip
            zero = "0" * len(branch.base)
            records = [f"0 {zero}\t{p}" for p in old]
            records += [f"100644 {sha}\t{p}" for (p, _), sha in zip(blobs, shas, strict=True)]
            git(top, "update-index", "-z", "--index-info",
                input="".join(f"{r}\0" for r in records), env=env)  # fmt: skip
            tree = git(top, "write-tree", env=env).stdout.strip()
            if tree == git(top, "rev-parse", f"{branch.base}^{{tree}}").stdout.strip():
                return None  # byte-identical to the base: no empty commit, no new branch
            commit = git(
                top, "commit-tree", tree, "-p", branch.base, "-F", "-", input=message
            ).stdout.strip()
        expected = "" if branch.new else branch.base
        moved = git(
            self.root, "update-ref", "-m", f"skillbank: {message.splitlines()[0][:200]}",
            f"refs/heads/{branch.name}", commit, expected, check=False,
        )  # fmt: skip
        if moved.returncode != 0:
            raise LibraryError(
                f"branch {branch.name!r} moved while this change was being written (another "
                f"writer?); nothing was committed there: {moved.stderr.strip()}"
            )
        return commit


def _parse(
    skill_id: str, text: Mapping[str, str], rel: str, signatures: SignatureCache | None = None
) -> Skill:
    """Build a `Skill` from the texts of its four files; ``rel`` names it in errors.

    ``signatures`` reads the signature (from its cache when the source is known).
    """
    meta = _front_matter(text["SKILL.md"], f"{rel}/SKILL.md")
    md = meta.get("metadata") or {}
    if meta.get("name") != skill_id or not isinstance(md, dict):
        raise LibraryError(
            f"{rel}/SKILL.md: front matter 'name' must be {skill_id!r} and 'metadata' a "
            f"mapping (got name={meta.get('name')!r})"
        )
    try:
        version = parse_version(str(md.get("version", "")))
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
    pinned = md.get("pinned")
    if pinned is not None and (not isinstance(pinned, str) or not pinned.strip()):
        raise LibraryError(
            f"{rel}/SKILL.md: metadata.pinned must be the reviewer's reason (text), got "
            f"{pinned!r}; remove it to let the ledger decide the stage"
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
        stored = json.loads(text["tools.json"])
        assert isinstance(stored, dict)
    except (ValueError, AssertionError):
        raise LibraryError(f"{rel}/tools.json: must be a JSON object of tool definitions") from None
    specs = {}
    for name, definition in stored.items():
        try:
            specs[name] = ToolSpec.from_openai(definition)
        except ValueError as exc:
            raise LibraryError(f"{rel}/tools.json: tool {name!r}: {exc}") from None
    source = text["skill.py"]
    try:
        if signatures is not None:
            signature = signatures.read(source)
        else:
            from skillbank.signature import read_signature

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
        pinned=pinned,
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


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file beside it, flushed to
    disk, then renamed over it (with ``mode``, given that mode first). Its folder must exist.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _branch_commit(root: Path, name: str) -> str | None:
    """The commit a local branch points to, or None when there is no such branch."""
    proc = git(root, "rev-parse", "--verify", "-q", f"refs/heads/{name}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None
