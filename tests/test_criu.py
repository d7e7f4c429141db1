"""CRIU import: every real checkpoint in shared/criu-images imports exactly; damaged images give
one line naming the file; the wire decoder on hand-made messages."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from procforge.capture.criu import CriuImageError, import_dir, read_image
from procforge.capture.protowire import WireError, decode
from procforge.cli import main
from procforge.tree import ZOMBIE, Task, loads

HERE = Path(__file__).resolve()
CANDIDATES = [HERE.parents[2] / "shared" / "criu-images", Path("/work/shared/criu-images")]
IMAGES = next((p for p in CANDIDATES if p.is_dir()), None)
FOLDERS = sorted(p.name for p in IMAGES.iterdir() if p.is_dir()) if IMAGES else []
needs_images = pytest.mark.skipif(IMAGES is None, reason="shared/criu-images not found")


def _expected(folder: Path) -> dict[int, Task]:
    """expected.json (pids inside the namespace, threads with the leader) as tasks, comm aside."""
    out = {}
    for e in json.loads((folder / "expected.json").read_text())["tasks"]:
        pid = e["pid"]
        threads = () if e["state"] == ZOMBIE else tuple((t,) for t in e["threads"] if t != pid)
        out[pid] = Task((pid,), e["ppid"], e["pgid"], e["sid"], e["state"], e["exit_status"],
                        threads, False, e["child_subreaper"], "")
    return out


@needs_images
@pytest.mark.parametrize("name", FOLDERS)
def test_fixture_imports_exactly(name: str) -> None:
    assert IMAGES is not None
    tree = import_dir(str(IMAGES / name))
    assert {p: replace(t, comm="") for p, t in tree.tasks.items()} == _expected(IMAGES / name)
    assert tree.namespaces == (1,)  # each was dumped with its own pid namespace
    assert tree.external == frozenset()  # so no id belongs to an outside: the missing are dead
    assert all(t.comm for t in tree)


@needs_images
def test_cli_import_and_the_quirks() -> None:
    assert IMAGES is not None
    r = CliRunner().invoke(main, ["import-criu", str(IMAGES / "dead-session-leader")])
    assert r.exit_code == 0, r.output
    t = loads(r.output)
    assert t[3].sid == 2 and 2 not in t.tasks and 2 not in t.external  # the dead session leader
    z = import_dir(str(IMAGES / "zombies"))
    assert z[3].exit_status == 7 << 8 and z[3].threads == () and z[4].exit_status == 0


def _copy(tmp_path: Path, name: str = "threads") -> Path:
    assert IMAGES is not None
    dst = tmp_path / name
    shutil.copytree(IMAGES / name, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    dst.chmod(0o755)
    return dst


def _error(d: Path) -> str:
    with pytest.raises(CriuImageError) as e:
        import_dir(str(d))
    msg = str(e.value)
    assert "\n" not in msg
    r = CliRunner().invoke(main, ["import-criu", str(d)])
    assert r.exit_code == 2 and r.output.strip() == f"procforge: {msg}"
    return msg


@needs_images
def test_damaged_images_name_the_file(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    core = d / "core-2.img"
    good = core.read_bytes()
    core.write_bytes(good[:-5])
    assert _error(d).startswith(f"{core}: truncated: entry at byte 8 wants")
    core.write_bytes(good[:6])
    assert _error(d).startswith(f"{core}: not a CRIU core image")
    core.write_bytes(b"")
    assert "magic nothing" in _error(d)
    core.write_bytes(good)
    (d / "pstree.img").write_text('{"not": "criu"}')
    assert _error(d).startswith(f"{d / 'pstree.img'}: not a CRIU pstree image (magic 0x6f6e227b")
    shutil.copy(IMAGES / "threads" / "pstree.img", d / "pstree.img")  # type: ignore[operator]
    shutil.copy(d / "core-1.img", d / "ids-1.img")
    assert _error(d).startswith(f"{d / 'ids-1.img'}: not a CRIU ids image")
    shutil.copy(IMAGES / "threads" / "ids-1.img", d / "ids-1.img")  # type: ignore[operator]
    (d / "core-5.img").unlink()
    assert _error(d) == f"{d / 'core-5.img'}: missing"
    assert _error(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'}: not a directory"


@needs_images
def test_corrupt_varint_and_wrong_task_core(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    p = d / "pstree.img"
    b = bytearray(p.read_bytes())
    b[12:24] = b"\xff" * 12  # inside the first entry: a varint that never ends
    p.write_bytes(bytes(b))
    assert "corrupt entry 1" in _error(d)
    shutil.copy(IMAGES / "threads" / "pstree.img", p)  # type: ignore[operator]
    shutil.copy(d / "core-3.img", d / "core-2.img")  # a thread's core where a process's should be
    assert "no task core (tc)" in _error(d)


@needs_images
def test_random_damage_never_escapes(tmp_path: Path) -> None:
    """Flipped bytes and cut files: an error naming a file, or a tree, never a traceback."""
    d = _copy(tmp_path, "zombies")
    files = sorted(f for f in d.iterdir() if f.suffix == ".img")
    originals = {f: f.read_bytes() for f in files}
    rng = random.Random(4)
    for _ in range(400):
        f = rng.choice(files)
        b = bytearray(originals[f])
        if rng.random() < 0.3:
            b = b[: rng.randrange(len(b) + 1)]
        else:
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        f.write_bytes(bytes(b))
        try:
            import_dir(str(d))
        except CriuImageError as e:
            assert str(e).startswith(str(d)) and "\n" not in str(e)
        except Exception as e:  # noqa: BLE001 - the invariants may reject a mangled tree
            from procforge.errors import TreeError

            assert isinstance(e, TreeError), repr(e)
        f.write_bytes(originals[f])


def test_read_image_counts_entries(tmp_path: Path) -> None:
    f = tmp_path / "core-9.img"
    f.write_bytes(b"\x19CVTG8\x05U")
    with pytest.raises(CriuImageError, match="holds 0 entries, expected one"):
        read_image(str(f), "core")


# ------------------------------------------------------------------------------ the wire decoder

S = {
    "m": {1: ("a", "uint32", "required"), 2: ("xs", "uint32", "repeated"),
          3: ("s", "sint32", "optional"), 4: ("i", "int32", "optional"),
          5: ("sub", "n", "optional"), 6: ("name", "string", "optional")},
    "n": {1: ("b", "bool", "optional")},
}


def test_wire_decoder_types() -> None:
    # a=150, xs packed [1, 2, 300], s=-3 (zigzag 5), i=-1 (10 bytes), sub{b=true}, unknown field 9
    # (fixed64) skipped, xs=7 unpacked, name="hé"
    buf = (b"\x08\x96\x01" + b"\x12\x04\x01\x02\xac\x02" + b"\x18\x05"
           + b"\x20" + b"\xff" * 9 + b"\x01" + b"\x2a\x02\x08\x01" + b"\x49" + b"\x00" * 8
           + b"\x10\x07" + b"\x32\x03h\xc3\xa9")
    assert decode(S, "m", buf) == {"a": 150, "xs": [1, 2, 300, 7], "s": -3, "i": -1,
                                   "sub": {"b": True}, "name": "hé"}


@pytest.mark.parametrize("buf, why", [
    (b"", "required field a is missing"),
    (b"\x08", "truncated varint"),
    (b"\x08" + b"\x80" * 11, "longer than 10 bytes"),
    (b"\x08\x01\x0b", "wire type 3"),
    (b"\x08\x01\x2a\x05\x08", "runs past the end"),
    (b"\x0a\x01\x00", "wire type 2, expected 0"),
    (b"\x08\x80\x80\x80\x80\x10", "out of range"),
    (b"\x08\x01\x32\x01\xff", "not UTF-8"),
])
def test_wire_decoder_defects(buf: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode(S, "m", buf)
