#!/usr/bin/env python3
"""Checks that every pattern of images/code-layout.ld still places code.

The linker script lays baseinit's code out by mangled-name patterns
(`.text.*8baseinit10supervisor10Supervisor3run*`) and by musl object
(`*libc.a:malloc.lo(.text .text.*)`). A rename or a split of a module makes a
pattern match nothing, silently: the binary still works, only PID 1 keeps
more memory resident. This reads the linker map images/build-binary.sh has
the link write (`-Wl,-Map=$CARGO_TARGET_DIR/baseinit.map`): under
`.text.cold` and `.text.hot` it lists each input section the script placed
there, with its size and the object (or `archive(member)`) it came from.

A pattern is one section-name pattern of a statement for any file
(`*(.text.*clap_builder* ...)`: each name pattern on its own), or a whole
statement for named files (`*libc.a:malloc.lo(.text .text.*)`: the object
must give at least one section, whichever of `.text` or `.text.*` it uses).
It matches when at least one non-empty input section in its own output
section matches it (ld's rules: fnmatch, `archive:member` for objects in an
archive). Sections the link discarded do not count: they are not in the
binary.

Prints every pattern with the input sections and bytes it placed; exits 1
naming each pattern that places nothing, and when the map was not linked with
the current script (rebuild with images/build-binary.sh).

Usage: images/check-code-layout.py [--map MAP] [--script SCRIPT] [--verbose]
  MAP     default ${CARGO_TARGET_DIR:-target}/baseinit.map
  SCRIPT  default images/code-layout.ld
"""

import argparse
import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Pattern:
    output: str  # .text.cold or .text.hot
    files: str  # the statement's file pattern
    sections: list  # the section-name patterns that must match (any of)
    label: str  # as the report shows it
    placed: list = field(default_factory=list)  # (name, size, file)


@dataclass
class Statement:
    output: str
    files: str
    sections: list

    def text(self):
        """As ld echoes it in the map."""
        return f"{self.files}({' '.join(self.sections)})"


def read_script(path):
    """The input-section statements of each output section of the script."""
    with open(path) as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    statements = []
    blocks = re.findall(r"(\.[\w.]+)\s*:\s*\{([^{}]*)\}", text)
    if not blocks:
        sys.exit(f"check-code-layout: {path}: no output section found")
    for output, body in blocks:
        found = re.findall(r"([^\s()]+)\(([^()]*)\)", body)
        rest = re.sub(r"([^\s()]+)\(([^()]*)\)", " ", body)
        if rest.strip() or not found:
            # KEEP(), SORT() and the like: teach this script before using them.
            sys.exit(f"check-code-layout: {path}: cannot read the statements of {output}: {rest.strip()!r}")
        for files, sections in found:
            statements.append(Statement(output, files, sections.split()))
    return statements


def patterns_of(statements):
    patterns = []
    for st in statements:
        if st.files == "*":
            for section in st.sections:
                patterns.append(Pattern(st.output, st.files, [section], section))
        else:
            patterns.append(Pattern(st.output, st.files, st.sections, st.text()))
    return patterns


SECTION = re.compile(r"^ (\.\S*)\s*(.*)$")
PLACEMENT = re.compile(r"^\s*0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)\s+(\S.*)$")


def read_map(path, outputs):
    """For each wanted output section: the input sections placed in it
    (name, size, file) and the statements ld echoes for it."""
    placed = {name: [] for name in outputs}
    echoed = {name: [] for name in outputs}
    with open(path, errors="replace") as f:
        lines = f.read().split("\n")
    try:
        start = lines.index("Linker script and memory map")
    except ValueError:
        sys.exit(f"check-code-layout: {path} is not a GNU ld map (no 'Linker script and memory map')")
    current = None
    pending = None  # an input section whose name filled its line
    for line in lines[start + 1 :]:
        if pending is not None:
            m = PLACEMENT.match(line)
            if m:
                placed[current].append((pending, int(m.group(1), 16), m.group(2).strip()))
            pending = None
            continue
        if line and not line[0].isspace():
            name = line.split()[0]
            current = name if name in placed else None
            continue
        if current is None or not line.startswith(" ") or line.startswith("  "):
            continue  # symbols, assignments, and what is not ours
        if line.startswith(" *fill*"):
            continue
        m = SECTION.match(line)
        if m:
            name, rest = m.groups()
            if not rest:
                pending = name
                continue
            m = PLACEMENT.match(rest)
            if m:
                placed[current].append((name, int(m.group(1), 16), m.group(2).strip()))
        elif "(" in line:
            echoed[current].append(" ".join(line.split()))
    return placed, echoed


def file_matches(pattern, file):
    """ld's file patterns: `archive:member`, `archive:`, `:file`, or a name."""
    m = re.match(r"^(.*)\(([^()]*)\)$", file)
    archive, member = (m.group(1), m.group(2)) if m else (None, None)
    if ":" in pattern:
        archive_pattern, member_pattern = pattern.split(":", 1)
        if archive is None:
            return archive_pattern == "" and fnmatch.fnmatchcase(file, member_pattern)
        return (
            archive_pattern != ""
            and fnmatch.fnmatchcase(archive, archive_pattern)
            and (member_pattern == "" or fnmatch.fnmatchcase(member, member_pattern))
        )
    return fnmatch.fnmatchcase(member if archive is not None else file, pattern)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    parser.add_argument("--map", default=os.path.join(target, "baseinit.map"))
    parser.add_argument("--script", default=os.path.join(ROOT, "images", "code-layout.ld"))
    parser.add_argument("--verbose", "-v", action="store_true", help="list the sections each pattern placed")
    args = parser.parse_args()
    if not os.path.exists(args.map):
        sys.exit(f"check-code-layout: no linker map at {args.map}: build with images/build-binary.sh first")

    statements = read_script(args.script)
    patterns = patterns_of(statements)
    outputs = sorted({p.output for p in patterns})
    placed, echoed = read_map(args.map, outputs)
    with open(args.map, errors="replace") as f:
        musl = "-linux-musl/" in f.read()

    # The map must come from a link with this very script: after an edit of
    # code-layout.ld, an old map would check the old patterns.
    stale = [st for st in statements if st.text() not in echoed[st.output]]
    if stale:
        print(f"check-code-layout: {args.map} was not linked with {args.script}; rebuild with images/build-binary.sh.")
        for st in stale:
            print(f"  not in the map: {st.output} {st.text()}")
        return 1

    for p in patterns:
        p.placed = [
            (name, size, file)
            for name, size, file in placed[p.output]
            if size > 0
            and file_matches(p.files, file)
            and any(fnmatch.fnmatchcase(name, s) for s in p.sections)
        ]

    print(f"check-code-layout: {os.path.relpath(args.script)} against {args.map}")
    width = max(len(p.label) for p in patterns)
    for p in patterns:
        size = sum(s for _, s, _ in p.placed)
        mark = "" if p.placed else "   <- matches nothing"
        print(f"  {p.output:<10} {p.label:<{width}} {len(p.placed):>5} sections {size:>8} bytes{mark}")
        if args.verbose:
            for name, s, file in p.placed:
                print(f"      {s:>7} {name}  {os.path.basename(file)}")
    for output in outputs:
        total = sum(s for _, s, _ in placed[output])
        print(f"  {output}: {len(placed[output])} input sections, {total} bytes in all")

    dead = [p for p in patterns if not p.placed]
    if dead:
        print(
            f"check-code-layout: FAILED: {len(dead)} of {len(patterns)} patterns in {os.path.relpath(args.script)} "
            "match nothing in the binary (renamed, moved, split, inlined or dropped code):"
        )
        for p in dead:
            print(f"  {p.output} {p.label}")
        if any("libc.a" in p.files for p in dead) and not musl:
            print("(This map is of a glibc link, build-binary.sh's fallback: musl's objects cannot match.)")
        print(
            "Update the patterns to the new names (images/check-code-layout.py --verbose lists what each places; "
            "`grep -E '^ \\.text' $CARGO_TARGET_DIR/baseinit.map` lists every section), or drop them."
        )
        return 1
    print(f"check-code-layout: ok: all {len(patterns)} patterns place code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
