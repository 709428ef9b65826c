"""The two halves of scripts/link-order.sh that read symbols.

  link-order.py make CALLGRIND_OUT EXE LIST   write LIST: EXE's functions that ran, hottest first
  link-order.py check EXE LIST                how much of LIST EXE has, and whether it sits together
"""
import collections
import os
import re
import subprocess
import sys


def functions(exe):
    """EXE's functions: name -> (address, size), from its symbol table."""
    out = subprocess.run(["nm", "-S", "--defined-only", exe],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for fields in (line.split() for line in out.splitlines()):
        if len(fields) == 4 and fields[2] in "tTwW":
            found[fields[3]] = (int(fields[0], 16), int(fields[1], 16))
    return found


def ran(profile, exe):
    """The names of EXE's functions in a callgrind profile, by instructions spent."""
    names, objects = {}, {}
    cost = collections.Counter()
    ob = fn = None
    skip = False
    spec = re.compile(r"^(c?(?:ob|fn|fl|fi|fe))=\((\d+)\)(?: (.*))?$")
    for line in open(profile):
        if skip:  # the line after calls= is the call's inclusive cost
            skip = False
            continue
        m = spec.match(line.rstrip("\n"))
        if m:
            kind, key, name = m.groups()
            if name is not None and kind in ("ob", "cob"):
                objects[key] = os.path.realpath(name)
            if name is not None and kind in ("fn", "cfn"):
                names[key] = name
            if kind == "ob":
                ob = key
            elif kind == "fn":
                fn = key
        elif line.startswith("calls="):
            skip = True
        elif fn is not None and objects.get(ob) == exe and line[:1] in "0123456789+-*":
            fields = line.split()
            if len(fields) >= 2:
                cost[fn] += int(fields[1])
    order, seen = [], set()
    for key, _ in cost.most_common():
        name = re.sub(r"'\d+$", "", names[key])  # callgrind's recursion mark
        if name not in seen:
            seen.add(name)
            order.append(name)
    return order


def make(profile, exe, dest):
    order = ran(profile, exe)
    # Only the binary's own functions: not callgrind's "(below main)", nor a
    # name its symbol table does not have.
    found = functions(exe)
    have = [s for s in order if s in found]
    if len(have) < 1000:
        sys.exit(f"link-order: only {len(have)} of the binary's functions ran ({len(order)} names): "
                 f"{dest} left as it was")
    with open(dest + ".new", "w") as f:
        f.write("\n".join(have) + "\n")
    os.replace(dest + ".new", dest)
    size = sum(found[s][1] for s in have)
    total = sum(n for _, n in found.values())
    print(f"{dest}: {len(have)} functions ({len(order) - len(have)} names that ran are not the "
          f"binary's symbols), {size / 1e6:.2f} MB of its {total / 1e6:.2f} MB of code")


def check(exe, path):
    listed = [line for line in open(path).read().split("\n") if line]
    found = functions(exe)
    have = [found[s] for s in listed if s in found]
    share = len(have) / max(len(listed), 1)
    size = sum(n for _, n in have)
    # Laid out, the listed functions fill one stretch of code about their own
    # size from the start of the code (an assembly file's section brings its
    # other functions along); scattered, they spread over most of it. A few
    # that the build placed elsewhere (a list a little stale) do not count.
    start = min((a for a, _ in found.values()), default=0)
    inside = sum(n for a, n in have if a + n <= start + 1.5 * size)
    together = bool(have) and inside >= 0.9 * size
    print(f"{exe}: has {len(have)} of the {len(listed)} functions listed ({share:.0%}), "
          f"{size / 1e6:.2f} MB of code, {'together' if together else 'NOT together'}: "
          f"{inside / max(size, 1):.0%} of it in the first {1.5 * size / 1e6:.2f} MB")
    sys.exit(0 if share >= 0.9 and together else 1)


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["make", profile, exe, dest]:
            make(profile, exe, dest)
        case ["check", exe, path]:
            check(exe, path)
        case _:
            sys.exit(__doc__)
