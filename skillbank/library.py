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

Front matter metadata values are strings, as the Agent Skills format asks. Ids use
underscores (they are Python function names), where Agent Skills names use hyphens; an export
that renames them is the way to publish skills in that format.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skillbank.errors import LibraryError, SkillNotFound
from skillbank.skill import STAGES, Case, Skill, TestedSkill, content_hash
from skillbank.validate import read_signature

__all__ = ["SKILL_FILES", "SkillLibrary", "StoredChange", "git", "skill_files"]

JSON = Any

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


def skill_files(skill: Skill | TestedSkill, *, version: int, stage: str) -> dict[str, str]:
    """The exact text of each file in a skill's folder (pure: same skill, same bytes)."""
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
    front = {
        "name": sid,
        "description": description,
        "metadata": {
            "version": str(version),
            "stage": stage,
            "entry": "skill.py",
            "tools": " ".join(tools),
            "requires": " ".join(requires),
            "content_hash": f"sha256:{content_hash(source)}",
            "cases": str(len(ordered)),
        },
    }
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=4096)
    body = [f"# {sid}", "", description, "", "## Signature", "", "```python"]
    body += [signature.render(), "```", "", "## When to use it", ""]
    body.append("For tasks like these (the ones it was learned from):")
    body.append("")
    body += [f"- {' '.join(c.task.split())}" for c in ordered[:10]]
    if len(ordered) > 10:
        body.append(f"- ... and {len(ordered) - 10} more in `cases.jsonl`")
    body += ["", "## Arguments", ""]
    if signature.params:
        doc_args = _docstring_args(signature.docstring)
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


def _docstring_args(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in doc.split("\n"):
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:"):
            in_args = True
            continue
        if in_args:
            if stripped.endswith(":") and " " not in stripped:
                break  # the next section
            if not stripped:
                continue
            name, sep, rest = stripped.partition(": ")
            if sep and name.isidentifier() and line.startswith("    ") and not line[4:5].isspace():
                current = name
                out[name] = rest
            elif current:
                out[current] += " " + stripped
    return out


@dataclass(frozen=True)
class StoredChange:
    """One skill written by `SkillLibrary.store`."""

    #: The skill id.
    id: str
    #: "added" or "updated".
    action: str
    #: The version written.
    version: int
    #: The stage written.
    stage: str


class SkillLibrary:
    """The ``skills/`` folder of a bank and the git repository holding it."""

    def __init__(self, root: Path, skills_dir: str = "skills") -> None:
        self.root = Path(root)
        self.dir = self.root / skills_dir
        self.rel = skills_dir
        self._cache: dict[str, tuple[tuple[tuple[int, int, int], ...], Skill]] = {}

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
        skill = self._read(skill_id, folder)
        if stamps is not None:
            self._cache[skill_id] = (stamps, skill)
        return skill

    def _read(self, skill_id: str, folder: Path) -> Skill:
        rel = f"{self.rel}/{skill_id}"
        try:
            text = {name: (folder / name).read_text(encoding="utf-8") for name in SKILL_FILES}
        except (OSError, UnicodeDecodeError) as exc:
            raise LibraryError(f"{rel}: cannot read the skill: {exc}") from None
        meta = _front_matter(text["SKILL.md"], f"{rel}/SKILL.md")
        md = meta.get("metadata") or {}
        if meta.get("name") != skill_id or not isinstance(md, dict):
            raise LibraryError(
                f"{rel}/SKILL.md: front matter 'name' must be {skill_id!r} and 'metadata' a "
                f"mapping (got name={meta.get('name')!r})"
            )
        try:
            version = int(md.get("version", ""))
        except ValueError:
            raise LibraryError(
                f"{rel}/SKILL.md: metadata.version must be a whole number, "
                f"got {md.get('version')!r}"
            ) from None
        stage = str(md.get("stage", ""))
        if stage not in STAGES:
            raise LibraryError(
                f"{rel}/SKILL.md: metadata.stage must be one of {', '.join(STAGES)}, got {stage!r}"
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
            raise LibraryError(
                f"{rel}/tools.json: must be a JSON object of tool definitions"
            ) from None
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
        )

    def load_all(self) -> list[Skill]:
        """Every skill, sorted by id (a broken folder raises LibraryError naming it)."""
        return [self.load(i) for i in self.ids()]

    # --- writing ------------------------------------------------------------------------

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

    def store(
        self,
        skills: Sequence[tuple[TestedSkill, int, str, str]],
        message: str,
    ) -> str | None:
        """Write skills and commit them in one commit; return its sha, or None if unchanged.

        Args:
            skills: (tested skill, version, stage, action) for each skill to write.
            message: The commit message (provenance: what changed and from which trajectories).

        Raises:
            LibraryError: when writing or committing fails; the library is left as it was.
        """
        if not skills:
            return None
        folders = [self.dir / t.draft.id for t, _, _, _ in skills]
        rels = [f"{self.rel}/{t.draft.id}" for t, _, _, _ in skills]
        with self._transaction(folders):
            try:
                for tested, version, stage, _ in skills:
                    folder = self.dir / tested.draft.id
                    folder.mkdir(parents=True, exist_ok=True)
                    files = skill_files(tested, version=version, stage=stage)
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

    def history(self, skill_id: str) -> list[tuple[str, str]]:
        """(commit sha, subject) of every commit that touched a skill, newest first."""
        out = git(
            self.root, "log", "--format=%H%x09%s", "--", f"{self.rel}/{skill_id}", check=False
        ).stdout
        pairs = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        return [(sha, subject) for sha, subject in pairs]


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
