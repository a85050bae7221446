"""One markdown table from a directory of ``benchmarks.trainer --out`` JSON files (a sweep).

Usage: ``python -m benchmarks.sweep_table runs/sweep``. Rows are the ``vmap`` rows of each file
(named after the file), grouped by d_model; ``vs base`` divides by the group's file whose name
ends in ``_attention_xla`` (the default configuration), measured in the same sweep.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.json")):
        payload = json.loads(path.read_text())
        for row in payload["rows"]:
            if row.get("impl") != "vmap":
                continue
            if "error" in row:
                out.append(
                    {
                        "name": path.stem,
                        "d_model": payload["config"]["d_model"],
                        "error": row["error"],
                    }
                )
                continue
            out.append(
                {
                    "name": path.stem,
                    "d_model": payload["config"]["d_model"],
                    "members": payload["config"]["members"],
                    "devices": payload["environment"].get("device_count", 1),
                    "device": payload["environment"].get("device", "?"),
                    "rate": row["member_steps_per_s"],
                    "tflops": row["tflops"],
                    "mfu": row["mfu"],
                    "peak": row.get("peak_bytes"),
                    "compile_s": row["first_call_s"],
                    "loss": row.get("final_loss"),
                }
            )
    return out


def table(found: list[dict]) -> str:
    lines = [
        "| variant | d_model | members | devices | member-steps/s | vs base | TFLOP/s | MFU | peak GiB | compile (s) | final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(found, key=lambda r: (r["d_model"], r["name"])):
        if "error" in r:
            lines.append(f"| {r['name']} | {r['d_model']} | failed: {r['error'][:160]} |||||||||")
            continue
        base = next(
            (
                b
                for b in found
                if "error" not in b
                and b["d_model"] == r["d_model"]
                and b["name"].endswith("_attention_xla")
            ),
            None,
        )
        ratio = f"{r['rate'] / base['rate']:.2f}x" if base else "n/a"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        peak = f"{r['peak'] / 2**30:.2f}" if r["peak"] else "n/a"
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "n/a"
        lines.append(
            f"| {r['name']} | {r['d_model']} | {r['members']} | {r['devices']} | {r['rate']:,.0f} | {ratio} | {r['tflops']:.3g} "
            f"| {mfu} | {peak} | {r['compile_s']:.1f} | {loss} |"
        )
    devices = sorted({r["device"] for r in found if "error" not in r})
    return f"device: {', '.join(devices) or '?'}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        raise SystemExit("usage: python -m benchmarks.sweep_table DIRECTORY_OF_JSON")
    print(table(rows(Path(args[0]))))


if __name__ == "__main__":
    main()
