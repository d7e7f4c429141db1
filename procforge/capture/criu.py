"""Import a CRIU checkpoint directory as a tree, reading the images' protobuf directly.

Facts about CRIU images (CRIU 3.x/4.x, images/*.proto and criu/include/magic.h) this relies on:
- An image file is a little-endian u32 magic pair, IMG_COMMON_MAGIC then the image's own magic
  (inventory.img has only its own), followed by entries: a u32 byte count and a protobuf message.
- pstree.img holds one pstree_entry per process, the dump's root first: pid, ppid, pgid, sid and
  the thread ids (leader included) as seen in the dumped pid namespace. CRIU keeps one pid level:
  it cannot dump nested pid namespaces. A zombie's thread list is meaningless (0 or garbage).
- core-<tid>.img holds a core_entry per thread; the leader's has the task part (tc): task_state
  (1 alive, 2 zombie, 3 stopped, CRIU's TASK_* values), exit_code (a zombie's raw wait status),
  comm, and child_subreaper (read by CRIU's parasite; absent for zombies, which run nothing).
- ids-<pid>.img holds the process's namespace ids; inventory.img the ids of CRIU's own root
  (root_ids). A root whose pid_ns_id differs from root_ids' was dumped with its own pid namespace:
  it is that namespace's init, and ids no task holds are dead (a restore recreates them). Without a
  namespace of its own, the root's group and session belong to the environment CRIU was run from
  (its --shell-job case): external.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from procforge.capture.protowire import Schema, WireError, decode
from procforge.errors import InvalidInput
from procforge.tree import ALIVE, STOPPED, ZOMBIE, Task, Tree

IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940

# The grammar of the images we read: message -> field number -> (name, type, label). Only the
# fields procforge uses are named; the decoder checks and skips the rest.
SCHEMA: Schema = {
    "inventory_entry": {
        1: ("img_version", "uint32", "required"),
        3: ("root_ids", "task_kobj_ids_entry", "optional"),
        4: ("ns_per_id", "bool", "optional"),
    },
    "pstree_entry": {
        1: ("pid", "uint32", "required"),
        2: ("ppid", "uint32", "required"),
        3: ("pgid", "uint32", "required"),
        4: ("sid", "uint32", "required"),
        5: ("threads", "uint32", "repeated"),
    },
    "core_entry": {
        1: ("mtype", "enum", "required"),
        3: ("tc", "task_core_entry", "optional"),
        4: ("ids", "task_kobj_ids_entry", "optional"),
        5: ("thread_core", "thread_core_entry", "optional"),
    },
    "task_core_entry": {
        1: ("task_state", "uint32", "required"),
        2: ("exit_code", "uint32", "required"),
        6: ("comm", "string", "optional"),
        18: ("child_subreaper", "bool", "optional"),
    },
    "thread_core_entry": {
        13: ("comm", "string", "optional"),
    },
    "task_kobj_ids_entry": {
        5: ("pid_ns_id", "uint32", "optional"),
    },
}

# file name pattern -> (the image's magic, its entry message, whether it holds one entry)
IMAGES: dict[str, tuple[int, str, bool]] = {
    "inventory": (0x58313116, "inventory_entry", True),
    "pstree": (0x50273030, "pstree_entry", False),
    "core": (0x55053847, "core_entry", True),
    "ids": (0x54432030, "task_kobj_ids_entry", True),
}

TASK_ALIVE, TASK_DEAD, TASK_STOPPED = 1, 2, 3
_STATE = {TASK_ALIVE: ALIVE, TASK_DEAD: ZOMBIE, TASK_STOPPED: STOPPED}


class CriuImageError(InvalidInput):
    """A CRIU image is missing, foreign, truncated or corrupt."""


def read_image(path: str, kind: str) -> list[dict[str, Any]]:
    """The entries of one image file of `kind` (a key of IMAGES), decoded."""
    magic, msg, single = IMAGES[kind]
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        raise CriuImageError("missing", source=path) from None
    except OSError as e:
        raise CriuImageError(f"cannot read: {e.strerror}", source=path) from None
    pos = 0
    words = [struct.unpack_from("<I", buf, i)[0] for i in (0, 4) if len(buf) >= i + 4]
    if kind == "inventory" and words[:1] == [magic]:
        pos = 4
    elif words[:1] in ([IMG_COMMON_MAGIC], [IMG_SERVICE_MAGIC]) and words[1:2] == [magic]:
        pos = 8
    else:
        got = " ".join(f"{w:#010x}" for w in words) or "nothing"
        raise CriuImageError(f"not a CRIU {kind} image (magic {got}, expected {magic:#010x})",
                             source=path)
    entries = []
    while pos < len(buf):
        if pos + 4 > len(buf):
            raise CriuImageError(f"truncated: {len(buf) - pos} stray bytes at byte {pos}",
                                 source=path)
        (size,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + size > len(buf):
            raise CriuImageError(f"truncated: entry at byte {pos - 4} wants {size} bytes, "
                                 f"{len(buf) - pos} left", source=path)
        try:
            entries.append(decode(SCHEMA, msg, buf, pos, pos + size))
        except WireError as e:
            raise CriuImageError(f"corrupt entry {len(entries) + 1}: {e}", source=path) from None
        pos += size
    if single and len(entries) != 1:
        raise CriuImageError(f"holds {len(entries)} entries, expected one", source=path)
    if not entries:
        raise CriuImageError("holds no entries", source=path)
    return entries


def import_dir(path: str) -> Tree:
    """The tree a CRIU checkpoint directory describes."""
    if not os.path.isdir(path):
        raise CriuImageError("not a directory", source=path)
    img = lambda name: os.path.join(path, name)  # noqa: E731
    inventory = read_image(img("inventory.img"), "inventory")[0]
    entries = read_image(img("pstree.img"), "pstree")
    root_ns = inventory.get("root_ids", {}).get("pid_ns_id")
    tasks: dict[int, Task] = {}
    ns_ids: dict[int, int | None] = {}
    for e in entries:
        pid = e["pid"]
        where = img(f"core-{pid}.img")
        core = read_image(where, "core")[0]
        tc = core.get("tc")
        if tc is None:
            raise CriuImageError(f"task {pid}: no task core (tc): a thread's core, not a "
                                 "process's", source=where)
        state = _STATE.get(tc["task_state"])
        if state is None:
            raise CriuImageError(f"task {pid}: field task_state: unknown value {tc['task_state']}",
                                 source=where)
        if pid in tasks:
            raise CriuImageError(f"task {pid} is listed twice", source=img("pstree.img"))
        threads = () if state == ZOMBIE else tuple((t,) for t in e["threads"] if t != pid)
        flag = tc.get("child_subreaper", False if state == ZOMBIE else None)
        tasks[pid] = Task((pid,), e["ppid"], e["pgid"], e["sid"], state,
                          tc["exit_code"] if state == ZOMBIE else None, threads, False, flag,
                          tc.get("comm", "")[:15])
        if state != ZOMBIE:
            ns_ids[pid] = read_image(img(f"ids-{pid}.img"), "ids")[0].get("pid_ns_id")
    root = tasks[entries[0]["pid"]]
    own_ns = ns_ids.get(root.id) is not None and ns_ids[root.id] != root_ns
    for pid, ns in ns_ids.items():
        if ns != ns_ids[root.id]:
            raise CriuImageError(f"task {pid} lives in another pid namespace than the root: "
                                 "nested pid namespaces are not in CRIU images",
                                 source=img(f"ids-{pid}.img"))
    if own_ns and root.id != 1:
        raise CriuImageError(f"the root {root.id} has its own pid namespace but is not pid 1",
                             source=img("pstree.img"))
    outside = {x for t in tasks.values() for x in (t.pgid, t.sid)} - set(tasks) - {0}
    if own_ns:
        external: set[int] = set()  # nothing outside a namespace holds its ids: dead
    else:
        external = {x for x in (root.pgid, root.sid) if x in outside}
        if root.ppid:
            external.add(root.ppid)
    return Tree(tasks=tasks, namespaces=(root.id,) if own_ns or root.id == 1 else (),
                external=frozenset(external), source=f"CRIU checkpoint {path}")
