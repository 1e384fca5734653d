"""Parsing what users type: sizes, batch sizes, lists. Every mistake is one UserError line."""
from __future__ import annotations

import argparse
import re

from dlmark.errors import UserError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
               "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        raise UserError(message)


def parse_size(text: str) -> int:
    """'8GiB' -> bytes. Decimal (GB) and binary (GiB) units; a bare number is bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise UserError(f"bad memory size {text!r}; write it like 8GiB, 512MiB or 2GB")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise UserError(f"memory size must be positive, got {text!r}")
    if not unit and value < MIN_BARE_BYTES:
        raise UserError(f"memory size {text!r} is {value} bytes; give a unit, like {text.strip()}GiB or {text.strip()}MiB")
    return value


#: A bare number below this is surely a size without its unit (no model runs in 1 MiB).
MIN_BARE_BYTES = 2**20


def parse_batch_sizes(text: str) -> list[int]:
    """'1,2,4' or '1:256' (the powers of two from 1 to 256; both ends powers of two)."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                low, high = (int(x) for x in part.split(":", 1))
                if low < 1 or high < low:
                    raise ValueError
            else:
                sizes.append(int(part))
                continue
        except ValueError:
            raise UserError(f"bad batch size {part!r} in --batch-sizes; give positive integers like 1,2,4 or a range 1:256") from None
        if not (_power_of_two(low) and _power_of_two(high)):
            inside = [2**k for k in range(high.bit_length()) if low <= 2**k <= high]
            raise UserError(f"a range in --batch-sizes runs over powers of two, so {part} needs both ends to be "
                            f"powers of two ({','.join(map(str, inside)) or 'none'} lie in it); "
                            f"write those, or list the sizes: {low},{high}")
        b = low
        while b <= high:
            sizes.append(b)
            b *= 2
    if not sizes or any(b < 1 for b in sizes):
        raise UserError(f"batch sizes must be positive integers, got {text!r}")
    return sorted(set(sizes))


def split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError("empty list; give comma-separated values")
    return items


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
