"""The signature cache: an unchanged library loads without parsing (or importing libcst)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skillbank import SkillBank, load_trajectories
from skillbank.library import SkillLibrary
from skillbank.signature import read_signature
from skillbank.signature_cache import CACHE_FILE, FORMAT, SignatureCache
from skillbank.skill import Signature
from tests.conftest import EXAMPLE_TRAJECTORIES

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sigcache") / "bank"
    with SkillBank.init(root) as bank:
        bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
    return root


def _library(root: Path) -> SkillLibrary:
    return SkillLibrary(root, "skills", ".skillbank")


def test_signatures_survive_json_equal() -> None:
    for source in sorted((REPO / "skills").glob("*/skill.py")):
        signature = read_signature(source.read_text())
        data = json.loads(json.dumps(signature.to_json()))
        back = Signature.from_json(data)
        assert back == signature, source
        # Equal dicts may differ in order; the order of a schema's properties is the
        # parameters' order, which tool definitions show.
        assert json.dumps(back.to_json()) == json.dumps(signature.to_json()), source


def test_an_unchanged_library_loads_from_the_cache_without_parsing(
    learned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (learned / ".skillbank" / CACHE_FILE).unlink(missing_ok=True)
    first = _library(learned).load_all()
    assert (learned / ".skillbank" / CACHE_FILE).is_file()

    def no_parsing(source: str) -> Signature:
        raise AssertionError("parsed a source the cache knows")

    monkeypatch.setattr("skillbank.signature.read_signature", no_parsing)
    again = _library(learned).load_all()
    assert [s.signature for s in again] == [s.signature for s in first]
    assert [json.dumps(s.signature.to_json()) for s in again] == [
        json.dumps(s.signature.to_json()) for s in first
    ]


def test_a_changed_source_is_read_again(learned: Path, tmp_path: Path) -> None:
    cache = SignatureCache(tmp_path / CACHE_FILE)
    source = (learned / "skills" / "list_orders_by_email" / "skill.py").read_text()
    assert cache.read(source) == read_signature(source)
    cache.save()
    renamed = source.replace("(email: str)", "(email_address: str)").replace(
        "email=email", "email=email_address"
    )
    fresh = SignatureCache(tmp_path / CACHE_FILE)
    assert [p.name for p in fresh.read(renamed).params] == ["email_address"]
    assert [p.name for p in fresh.read(source).params] == ["email"]


def test_a_full_read_forgets_the_signatures_of_sources_gone(tmp_path: Path) -> None:
    cache = SignatureCache(tmp_path / CACHE_FILE)
    old, new = "def f(x: int) -> int:\n    return x\n", "def f(y: int) -> int:\n    return y\n"
    cache.read(old)
    cache.save()
    fresh = SignatureCache(tmp_path / CACHE_FILE)
    fresh.read(new)
    fresh.keep_only_used()
    fresh.save()
    saved = json.loads((tmp_path / CACHE_FILE).read_text())["signatures"]
    assert [s["params"][0][0] for s in saved.values()] == ["y"]


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"format": FORMAT + 1, "signatures": {"x": 1}}), "[]",
     json.dumps({"format": FORMAT, "signatures": {"k": {"broken": True}}})],
)  # fmt: skip
def test_a_bad_or_foreign_cache_file_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / CACHE_FILE).write_text(content)
    source = "def f(x: int) -> int:\n    return x\n"
    assert SignatureCache(tmp_path / CACHE_FILE).read(source) == read_signature(source)


def test_a_read_only_state_folder_still_reads(tmp_path: Path) -> None:
    cache = SignatureCache(tmp_path / "missing" / "deeper" / CACHE_FILE)
    (tmp_path / "missing").write_text("a file where a folder should be")
    source = "def f(x: int) -> int:\n    return x\n"
    assert cache.read(source).params[0].name == "x"
    cache.save()  # cannot write: no error, only no cache


def test_threads_share_a_cache(tmp_path: Path) -> None:
    import threading

    cache = SignatureCache(tmp_path / CACHE_FILE)
    sources = [f"def f{i}(x: int) -> int:\n    return x + {i}\n" for i in range(40)]
    failures: list[BaseException] = []

    def work(mine: list[str]) -> None:
        try:
            for source in mine:
                cache.read(source)
                cache.save()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(sources[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    cache.save()
    assert failures == []
    saved = json.loads((tmp_path / CACHE_FILE).read_text())["signatures"]
    assert len(saved) == len(sources)


def _modules_after(code: str, cwd: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(json.loads(done.stdout.splitlines()[-1]))


#: Modules whose import alone takes longer than a short command should (issue 14, item 16).
HEAVY = ("numpy", "bm25s", "hypothesis", "pydantic", "openai", "jsonschema", "libcst._nodes")


def test_help_list_and_run_import_nothing_heavy(learned: Path, tmp_path: Path) -> None:
    _library(learned).load_all()  # the signature cache is warm
    shop = tmp_path / "shop.sqlite"
    run = (
        "from skillbank.cli import cli\n"
        "def call(*args):\n"
        "    try:\n"
        "        cli.main(args=list(args), prog_name='skillbank', standalone_mode=False)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, (args, exc.code)\n"
    )
    cases = {
        "help": run + "call('--help')",
        "list": run + f"call('list', '--root', {str(learned)!r})",
        "run": (
            "from skillbank.examples.shop import Shop\n"
            f"Shop.create({str(shop)!r})\n"
            "import os\n"
            f"os.environ['SKILLBANK_SHOP_DB'] = {str(shop)!r}\n" + run
            + "call('run', 'list_orders_by_email', '--args', '{\"email\": "
            f"\"bob@example.com\"}}', '--tools', 'skillbank.examples.shop:tools', '--root', "
            f"{str(learned)!r})"
        ),
    }  # fmt: skip
    for name, code in cases.items():
        loaded = _modules_after(code, tmp_path)
        heavy = sorted(m for m in HEAVY if m in loaded)
        assert heavy == [], f"{name} imported {heavy}"
