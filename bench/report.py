"""The README's "Measured here" tables, made from `bench/results/*.json` (never typed by hand).

Run `python -m bench.report` after `make bench` and paste its output into README.md, or
`python -m bench.report --readme README.md` to replace the section between the markers
`<!-- bench:begin -->` and `<!-- bench:end -->`. A bench whose JSON is missing is skipped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _rows(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    out = [f"**{title}**", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]  # fmt: skip
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def latency(d: dict[str, Any]) -> str:
    s = d["stats"]
    names = [
        ("greeting_after_200ok_prewarm", "greeting heard after 200 OK, pre-warmed"),
        ("greeting_after_200ok_no_prewarm", "greeting heard after 200 OK, not pre-warmed"),
        ("uplink", "engine-added, caller RTP → provider socket"),
        ("downlink", "engine-added, provider delta → RTP"),
        ("barge_in", "barge-in: caller's speech onset → bot silent, on the wire"),
        ("echo_round_trip", "echo round trip through the engine"),
        ("pjmedia_loopback_round_trip", "the same path looped in pjmedia (floor)"),
    ]
    rows = [(label, s[k]["p50"], s[k]["p95"], s[k]["max"], s[k]["n"])
            for k, label in names if k in s]  # fmt: skip
    return _rows("Latency (ms), `bench/latency.py`", ("measure", "p50", "p95", "max", "n"), rows)


def media_path(d: dict[str, Any]) -> str:
    rows = []
    for rate, v in d["summary"].items():
        rows.append((f"{int(rate) // 1000} kHz ports", v["uplink_us_per_frame"],
                     v["downlink_us_per_frame"], v["python_cpu_pct_per_call"],
                     v["calls_per_core_python_only"]))  # fmt: skip
    e2e = d.get("end_to_end", {})
    text = _rows(
        "Media path per 20 ms frame, Python side, `bench/media_path.py`",
        ("ports", "uplink µs", "downlink µs", "% of a core per call", "calls per core"),
        rows,
    )
    if e2e:
        floor = d.get("end_to_end_pjmedia_loopback", {})
        swig = d.get("end_to_end_pjsua2_ports", {})
        text += (
            f"\n\nA real worker with {e2e['calls']} echo calls: "
            f"{e2e['cpu_pct_per_call']} % of a core per call"
            + (
                f" (with pjsua2 AudioMediaPorts instead of the native ports: "
                f"{swig['cpu_pct_per_call']} %)"
                if swig
                else ""
            )
            + (f"; pjmedia alone, looped in C: {floor['cpu_pct_per_call']} %" if floor else "")
            + f"; idle worker {e2e['idle_worker_cpu_pct']} %."
            + " The port_in/port_out stages are the pjsua2 ports' only: native ports copy"
            " frames in C on pjmedia's clock thread."
        )
    return text


def load(d: dict[str, Any]) -> str:
    rows = [(r["level"], r["workers"], r["hold_s"], r["calls_failed"], r["underrun_pct"],
             r["cpu_pct_per_call"], r["rss_worker_max_mb"], r["rss_per_extra_call_mb"],
             "yes" if r["passed"] else f"no: {r['failure']}")
            for r in d["levels"] + d.get("holds", [])]  # fmt: skip
    text = _rows(
        "Concurrent echo calls through the front door (Kamailio), `bench/load.py`",
        ("calls", "workers", "hold s", "failed", "underruns %", "CPU % per call",
         "RSS MB per worker", "MB per extra call", "passed"),
        rows,
    )  # fmt: skip
    return text + f"\n\nHeld for 60 s: **{d['max_concurrency_held_60s']} calls**."


def echo_calls(d: dict[str, Any]) -> str:
    rows = [
        ("CPU per echo call, % of a core", d["cpu_pct_per_echo_call"]),
        ("idle worker CPU, % of a core", d["idle_worker_cpu_pct"]),
        ("idle worker RSS, MB", d["idle_worker_rss_mb"]),
        ("worker RSS with 4 calls, MB", d["worker_rss_mb_4_calls"]),
        ("engine-added round trip, p50 ms", d["engine_added_round_trip_ms_p50"]),
    ]
    return _rows("One worker, 4 SIPp echo calls, `bench/echo_calls.py`", ("measure", "value"), rows)


def local_engine(d: dict[str, Any]) -> str:
    s = d["single_session"]
    rows = [
        ("end of speech → first reply audio", s["end_of_speech_to_audio_ms"]),
        ("turn detected → first reply audio", s["stopped_to_audio_ms"]),
        ("speech recognition left when the turn ended", s["asr_ms"]),
        ("first clause synthesised", s["created_to_audio_ms"]),
    ]
    text = _rows(
        "Offline engine, one caller (ms), `bench/local_engine.py`",
        ("measure", "p50", "p95"),
        [(label, v["p50"], v["p95"]) for label, v in rows],
    )
    lv = [(r["sessions"], r["end_of_speech_to_audio_ms"]["p50"],
           r["end_of_speech_to_audio_ms"]["p95"], r["queue_wait_ms"]["p95"])
          for r in d["levels"] if "queue_wait_ms" in r]  # fmt: skip
    text += "\n\n" + _rows(
        "Offline engine, simultaneous conversations",
        ("callers", "reply after end of speech p50 ms", "p95 ms", "pool wait p95 ms"),
        lv,
    )
    return text + (
        f"\n\nConversations held before a turn waits more than 500 ms: "
        f"**{d['max_sessions_under_500ms_wait']}**."
    )


def failover(d: dict[str, Any]) -> str:
    g, a = d["gap_ms"], d["dead_air_ms"]
    rows = [
        ("main provider killed mid-reply (calls)", d["kills"]),
        ("calls dropped", d["dropped_calls"]),
        ("calls the backup took over", d["switched"]),
        ("backup given the earlier turns", d["backup_had_history"]),
        ("last main audio → first backup audio, p50 / p95 ms", f"{g['p50']} / {g['p95']}"),
        ("longest silence between them, p50 / p95 ms", f"{a['p50']} / {a['p95']}"),
    ]
    text = _rows(
        "Provider failover, on the caller's side of the wire, `bench/failover.py`",
        ("measure", "value"),
        rows,
    )
    return text + (
        '\n\nThe gap holds the bridge phrase ("Sorry, just a moment.", 1.5 s); the '
        "silence is the time without it."
    )


def flood(d: dict[str, Any]) -> str:
    rows = []
    for r in d["rows"]:
        if r["flood"] == "none":
            fate = "-"
        elif r["flood"] == "malformed":
            fate = f"{r['answered_400']} answered 400"
        else:
            fate = f"{r['answered']} answered, {r['failed'] - r['unanswered']} refused"
            if r["unanswered"]:
                fate += f", {r['unanswered']} unanswered"
        why = ", ".join(f"{k} {v}" for k, v in sorted(r["refused"].items())) or "-"
        after = r["legit_answered_after_s"]
        rows.append((
            "lone worker" if r["target"] == "worker" else "front door + 2 workers",
            "none (control)" if r["flood"] == "none" else f"{r['flood']} {r['rate_per_s']}/s",
            r["sent"], fate, why,
            "yes" if r["engine_up"] else "**no**",
            ("whole" if r["live_audio_intact"] else "not whole")
            + f" ({r['live_audio_pieces_broken']} pieces lost)",
            "never" if after is None else after,
        ))  # fmt: skip
    text = _rows(
        f"INVITE floods of {d['flood_s']:g} s while a call is live, `bench/flood.py`",
        ("target", "flood", "INVITEs", "what they got", "refused by reason", "engine up",
         "live call's echo", "legit call answered s after"),
        rows,
    )  # fmt: skip
    return text + (
        "\n\nEach flood comes from an address of its own; the live call and the legitimate "
        "caller from 127.0.0.1. The live call's echo is cut in 100 ms pieces, each looked for "
        'in the caller\'s recording; "whole" allows one piece across a jitter-buffer step. '
        "The flood, SIPp and Kamailio share the machine's 2 cores with the call. Before the "
        "admission gate a lone worker crashed at 75 INVITEs/s (PJSIP's I/O queue ran out of "
        "handles) and lost its live call."
    )


def embedder(d: dict[str, Any]) -> str:
    t = d["timing_ms"]
    rows = [(f"{k} thread{'s' if k != '1' else ''}", v["single"]["p50"], v["single"]["p95"],
             v["batch30"]["p50"], v["batch30"]["p95"]) for k, v in t.items()]  # fmt: skip
    text = _rows(
        "Sentence embeddings (all-MiniLM-L6-v2, ONNX), `bench/embedder.py`",
        ("onnxruntime threads", "one utterance p50 ms", "p95 ms",
         f"{d['batch_examples']} plan examples p50 ms", "p95 ms"),
        rows,
    )  # fmt: skip
    return text + (
        f"\n\nLoad {d['load_s']} s, +{d['rss_model_mb']} MB resident (onnxruntime expands the "
        f"int8 weights). The right intent ranks first for {d['intent_top1']} caller phrasings "
        "written in callers' own words (bench/embedder.py lists them with their scores)."
    )


def _conversation_cells(d: dict[str, Any] | None) -> dict[str, str]:
    """One column of the conversation table: a run's numbers by row name."""
    if d is None:
        return {}
    cells: dict[str, str] = {}
    one, four = d["runs"].get("1"), d["runs"].get("4")
    if one:
        s = one["summary"]
        cells["all"] = f"{s['success']} of {s['items']} ({s['success_pct']} %)"
        for plan, v in s["per_plan"].items():
            cells[plan] = f"{v['success']} of {v['items']} ({v['success_pct']} %)"
        cells["lost"] = str(s["lost_utterances"])
        cells["cut"] = f"{s['greetings_cut_by_backchannel']} of {s['backchannel_items']}"
    for n, run in (("1", one), ("4", four)):
        if run:
            lat = run["summary"]["latency_ms"]
            cells[f"lat{n}"] = f"{lat['p50']} / {lat['p95']} (n={lat['n']})"
    if four:
        s = four["summary"]
        cells["all4"] = f"{s['success']} of {s['items']} ({s['success_pct']} %)"
    return cells


def conversation(d: dict[str, Any]) -> str:
    """Task success and reply latency over SIP for the corpus; with the baseline's numbers
    (conversation_baseline.json) beside them when there is one."""
    base = _load("conversation_baseline")
    now, before = _conversation_cells(d), _conversation_cells(base)
    plans = sorted(k for k in {**now, **before} if k not in
                   ("all", "lost", "cut", "lat1", "lat4", "all4"))  # fmt: skip
    names = [("all", "task success, 1 caller at a time"),
             *[(p, f"task success, {p}") for p in plans],
             ("all4", "task success, 4 callers at once (a part of the corpus)"),
             ("lat1", "reply after the caller stops, p50 / p95 ms, 1 caller"),
             ("lat4", "reply after the caller stops, p50 / p95 ms, 4 callers"),
             ("lost", "caller utterances lost"),
             ("cut", "greetings cut by a backchannel")]  # fmt: skip
    corpus = d.get("corpus", {})
    if base is not None and base.get("when") != d.get("when"):
        title = (f"Conversations over SIP, offline engine, `bench/conversation.py` "
                 f"(before: {base.get('commit', '?')}, after: {d.get('commit', '?')})")  # fmt: skip
        rows = [(label, before.get(k, "-"), now.get(k, "-")) for k, label in names]
        text = _rows(title, ("measure", "before", "after"), rows)
    else:
        which = "baseline, engine" if _load("conversation") is None else "engine"
        title = (f"Conversations over SIP, offline engine, `bench/conversation.py` "
                 f"({which} {d.get('commit')})")  # fmt: skip
        text = _rows(title, ("measure", "value"), [(label, now.get(k, "-")) for k, label in names])
    return text + (
        f"\n\n{corpus.get('items', '?')} callers of the example plans' offline routes "
        f"(`bench/corpus/conversation.yaml`), in their own words, voices "
        f"{', '.join(corpus.get('voices', []))}, {corpus.get('noisy', 0)} on a noisy line. "
        "Success is what a user checks: the webhook got the right arguments, the REFER named "
        "the right target, the bot hung up, the greeting was heard whole. Latency is measured "
        "on the caller's recording. The machine is shared: latencies are noisy."
    )


def _conversation_or_baseline() -> dict[str, Any] | None:
    return _load("conversation") or _load("conversation_baseline")


SECTIONS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("latency", latency),
    ("load", load),
    ("media_path", media_path),
    ("echo_calls", echo_calls),
    ("local_engine", local_engine),
    ("failover", failover),
    ("flood", flood),
    ("embedder", embedder),
    ("conversation", conversation),
]


def report() -> str:
    parts = []
    machine = ""
    for name, fn in SECTIONS:
        d = _conversation_or_baseline() if name == "conversation" else _load(name)
        if d is None:
            continue
        machine = machine or str(d.get("machine", ""))
        parts.append(fn(d))
    head = f"Machine: {machine}." if machine else ""
    return "\n\n".join([head, *parts]).strip() + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--readme", help="replace the bench section of this file")
    args = p.parse_args()
    text = report()
    if not args.readme:
        print(text)
        return
    path = Path(args.readme)
    doc = path.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{path}: no {BEGIN} … {END} markers")
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    path.write_text(doc[:a] + "\n" + text + doc[b:])
    print(f"{path}: bench section replaced")


if __name__ == "__main__":
    main()
