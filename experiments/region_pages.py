"""Where the resident memory of many live Python regions is (docs/design.md, "What a region costs").

    PYTHONPATH=build/python .venv/bin/python experiments/region_pages.py [--regions N] [--hold list|request]

Makes N regions that each hold one small list (`list`) or one response of bench/requests_bench.py's
`handle` (`request`, about 300 objects), keeps them all alive, and prints:

* the resident memory they added, per region, split by mapping (/proc/self/smaps): the region
  reservation's arenas against everything else (mimalloc's own arenas hold the heap structs, theaps
  and page bitmaps);
* in the arenas, how many 64 KiB slices a region touches and how many 4 KiB OS pages of each are
  resident (/proc/self/pagemap's present bit, readable without privileges).
"""
import argparse
import collections
import os
import struct
import sys

import region

HERE = os.path.dirname(os.path.abspath(__file__))
SLICE = 64 << 10
OS_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_by_mapping():
    """{(start, end, name): resident KiB} from /proc/self/smaps."""
    out, current = {}, None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                current = (start, end, parts[5] if len(parts) > 5 else "")
            elif parts[0] == "Rss:":
                out[current] = int(parts[1])
    return out


def arena_span(addresses, arena_size=4 << 30):
    """The arenas holding these addresses, as one range: the reservation is one mapping, cut into
    arena_size arenas (the default region_config), which mprotect splits into several mappings when
    arenas are committed on demand (REGION_COMMIT=on-demand)."""
    return (min(addresses) // arena_size * arena_size, (max(addresses) // arena_size + 1) * arena_size)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=2000)
    parser.add_argument("--hold", choices=["list", "request"], default="request")
    args = parser.parse_args()
    if args.hold == "request":
        sys.path.insert(0, os.path.join(HERE, "..", "bench"))
        import requests_bench
        cache = requests_bench.build_cache(1000)

        def make(i):
            return requests_bench.handle(requests_bench.BODY, cache)
    else:
        def make(i):
            return [i]

    warm = region.region()   # the process's first region activates the binding: not counted
    warm.close()
    before = resident_by_mapping()
    live = []
    for i in range(args.regions):
        r = region.region()
        with r:
            r.root = make(i)
        live.append(r)
    after = resident_by_mapping()

    n = args.regions
    arenas = arena_span([id(r.root) for r in live])
    in_arenas = other = 0
    for key, kib in after.items():
        added = kib - before.get(key, 0)
        start, end, _ = key
        if start < arenas[1] and arenas[0] < end:   # the reservation's mapping may span more arenas
            in_arenas += added
        else:
            other += added
    print(f"{n:,} regions, each holding {'a request response' if args.hold == 'request' else 'a small list'}:")
    print(f"  resident memory added: {(in_arenas + other) / n:.1f} KiB a region "
          f"({in_arenas / n:.1f} in the arenas, {other / n:.1f} elsewhere)")

    pages_per_slice = collections.Counter()
    by_index = collections.Counter()
    with open("/proc/self/pagemap", "rb") as pagemap:
        for (start, end, _), kib in after.items():
            start, end = max(start, arenas[0]), min(end, arenas[1])
            if start >= end or not kib:
                continue
            pagemap.seek(start // OS_PAGE * 8)
            entries = pagemap.read((end - start) // OS_PAGE * 8)
            for i in range(len(entries) // 8):
                (entry,) = struct.unpack_from("<Q", entries, i * 8)
                if entry >> 63:
                    address = start + i * OS_PAGE
                    pages_per_slice[address // SLICE] += 1
                    by_index[(address % SLICE) // OS_PAGE] += 1
    histogram = collections.Counter(pages_per_slice.values())
    print(f"  arena slices touched: {len(pages_per_slice) / n:.1f} a region, "
          f"{sum(pages_per_slice.values()) / n:.1f} resident OS pages")
    print("  slices by resident OS pages: " +
          ", ".join(f"{pages}: {count / n:.2f}" for pages, count in sorted(histogram.items())))
    print("  resident OS pages by their index in the slice: " +
          " ".join(f"{by_index[i] / n:.2f}" for i in range(SLICE // OS_PAGE)))


if __name__ == "__main__":
    main()
