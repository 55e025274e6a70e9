#!/usr/bin/env python3
"""The layers of src/ and the imports between them.

Reads every `crate::NAME` path in the code of src/ (comments, doc comments and `#[cfg(test)]`
modules left out; names the crate root re-exports are followed to their module), prints the
import graph of the top-level modules, and fails if a module names one in a higher layer or if
modules import each other in a cycle. The layers are the ones SPEC.md and DESIGN describe:
data flows down, never back up.

    python3 .ci/layers.py          # graph and verdict; exit 1 on an upward import or a cycle
"""
import os
import re
import sys

# Lowest first. Modules in one layer may use each other, but not in a cycle.
LAYERS = [
    ("base", ["util", "error", "trace"]),
    ("protocol (no I/O)", ["codec", "auth", "secure"]),
    ("os", ["sys"]),
    ("addresses", ["address"]),
    ("transport", ["transport"]),
    ("connection", ["connection"]),
    ("endpoints", ["sentinel", "listener", "wait", "handles", "shared", "tokio"]),
    ("process", ["process"]),
    ("consumers", ["queue", "pool", "manager"]),
    ("threads", ["dummy"]),
    ("documentation (no code)", ["guide"]),
]
RANK = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms}

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def code_of(path):
    """The file's code: no comment lines, no trailing comments, no test module."""
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests\b", text, re.M)
    if cut:
        text = text[: cut.start()]
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        lines.append(re.sub(r"\s//[^\"]*$", "", line))
    return "\n".join(lines)


def root_reexports():
    """Names `lib.rs` re-exports (`pub use module::{A, B}`) -> their module."""
    names = {}
    lib = code_of(os.path.join(SRC, "lib.rs"))
    for m in re.finditer(r"pub use (\w+)::\{([^}]*)\};|pub use (\w+)::(\w+);", lib):
        module = m.group(1) or m.group(3)
        items = m.group(2) or m.group(4)
        for item in re.findall(r"\w+", items):
            names[item] = module
    return names


def graph():
    reexports = root_reexports()
    edges = {}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), SRC)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top == "lib":
                continue
            code = code_of(os.path.join(root, f))
            used = set(re.findall(r"\bcrate::(\w+)", code))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
                used.update(re.findall(r"(?:^|,)\s*(\w+)", group))
            targets = {reexports.get(u, u) for u in used}
            edges.setdefault(top, set()).update(t for t in targets if t != top)
    known = set(edges)
    return {a: sorted(b for b in bs if b in known) for a, bs in edges.items()}


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def main():
    edges = graph()
    bad = []
    for i, (layer, members) in reversed(list(enumerate(LAYERS))):
        for m in members:
            if m not in edges:
                continue
            print(f"{layer:>18} | {m:<10} -> {', '.join(edges[m]) or '(nothing)'}")
    for m in sorted(edges):
        if m not in RANK:
            bad.append(f"{m} is in no layer: add it to LAYERS in .ci/layers.py")
            continue
        for t in edges[m]:
            if t in RANK and RANK[t] > RANK[m]:
                bad.append(f"{m} ({LAYERS[RANK[m]][0]}) names {t} ({LAYERS[RANK[t]][0]}), a higher layer")
    for c in cycles(edges):
        bad.append("cycle: " + ", ".join(f"{a}->{b}" for a in c for b in edges[a] if b in c))
    if bad:
        print("\n".join(["", "layer violations:"] + ["  " + b for b in bad]))
        return 1
    print("\nno upward imports, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
