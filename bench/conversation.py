"""Conversation bench: callers in their own words, over SIP, against the example plans'
offline routes; did they get what they called for, and how fast did the bot answer?

For each plan, `telephony-bot serve` runs it (worker + the offline engine, as `make run`
does), next to a fake back office (the plan's webhooks, on loopback) and a SIP peer that
takes transferred calls. Every corpus item (bench/corpus/conversation.yaml) is one real
call placed with `telephony-bot dial`: its utterances, rendered by an offline voice
(bench/conversation_voices.py, some with line noise), are said in turn (`--say`: once the
bot spoke and paused) or over the greeting (`--play` at a time). The verdict
(bench/conversation_judge.py) comes from what a user sees: the back office's requests, the
call record, the bot's logged turns, the REFER the caller got, who hung up, and the
caller's recording, on which the reply latency is measured (end of the caller's speech →
first bot audio after it).

Writes bench/results/conversation.json (or `--out`) and prints a table. Runs in parts:
`--plan hospital`, `--limit N`, `--ids a,b`, `--callers 1` (4: four callers at once too).
`--baseline` writes bench/results/conversation_baseline.json instead, for before/after.
Run: `python -m bench.conversation`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import yaml
from aiohttp import web

from bench import conversation_voices as voices
from bench.conversation_judge import Observed, Verdict, first_turn_ms, judge, voiced_ms
from tests.support import engine
from tests.support.webhook import WebhookServer

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "corpus" / "conversation.yaml"
RESULTS = Path(__file__).parent / "results"
PIN = "4321"
SITES = {"SUB-0412": "Substation North", "TRF-1187": "Transformer yard East",
         "POL-3305": "Pole line 33"}  # fmt: skip
GAP_S = 1.0  # the caller's --turn-gap: the bot's pause that ends its turn


@dataclass(frozen=True)
class Plan:
    name: str
    file: str
    number: str  # the number dialled: the plan's offline route
    caller_prefix: str  # a caller the back office knows (+ the item's index)
    targets: tuple[str, ...]  # transfer target names the bench answers
    greeting_hold_s: float  # how long a caller who says nothing listens to the greeting
    route_overrides: dict[str, dict[str, Any]]  # route name -> fields set for the bench


PLANS = {
    "hospital": Plan("hospital", "hospital.yaml", "+493012345699", "+4915112340",
                     ("nurse", "reception"), 18.0, {}),
    "bank": Plan("bank", "bank.yaml", "+496955500199", "+4917612345",
                 ("advisor", "card_block"), 14.0, {}),
    # the inspectors' route runs on a realtime model; the bench puts it on the offline
    # engine (its `flow`), as a deployment without a key would
    "field": Plan("field", "field_inspection.yaml", "+4989200300", "+491512345",
                  ("dispatch",), 12.0, {"field-inspection": {"provider": "offline"}}),
    "example": Plan("example", "example.yaml", "100", "+4930100", (), 8.0, {}),
}  # fmt: skip


# ------------------------------------------------------------------ the back office


class BackOffice:
    """The plans' webhooks, answering as the real systems would; every request is kept as
    (monotonic time, tool name, arguments)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        j = web.json_response
        routes: dict[tuple[str, str], Any] = {
            ("GET", "/hospital/slots"): self._h("check_availability", self._slots),
            ("POST", "/hospital/bookings"): self._h("book_slot", lambda a: j(
                {"booking": {"reference": "HX-4821", "time": a.get("time", "09:30")}})),
            ("GET", "/bank/customers"): self._h("lookup_customer", self._customer),
            ("POST", "/bank/pin-checks"): self._h("verify_pin", self._pin),
            ("GET", "/bank/customers/{customer_id}/balances"): self._h("get_balance", lambda a: j(
                {"accounts": [{"name": "current account", "amount": "1,234.56",
                               "currency": "euros", "amount_words": "one thousand two hundred "
                               "and thirty-four euros and fifty-six cents"}]})),
            ("GET", "/field/sites/{site_id}"): self._h("lookup_site", self._site),
            ("POST", "/field/inspections"): self._h("log_inspection", lambda a: j(
                {"record": {"number": "INS-2026-00417"}})),
        }  # fmt: skip
        self.server = WebhookServer(routes)

    def _h(self, tool: str, answer: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            args: dict[str, Any] = dict(request.query) | dict(request.match_info)
            if request.method == "POST":
                with contextlib.suppress(ValueError):
                    args |= json.loads(await request.text())
            with self._lock:
                self.calls.append((time.monotonic(), tool, args))
            return answer(args)  # type: ignore[no-any-return]

        return handler

    @staticmethod
    def _slots(a: dict[str, Any]) -> web.Response:
        slots = [{"time": "09:30", "doctor": "Dr. Weber"}, {"time": "11:15", "doctor": "Dr. Ng"}]
        return web.json_response({"slots": slots})

    @staticmethod
    def _customer(a: dict[str, Any]) -> web.Response:
        phone = str(a.get("phone", ""))
        if not phone.startswith(PLANS["bank"].caller_prefix):
            return web.json_response({"error": "unknown number"}, status=404)
        cust = {"first_name": "Anna", "id": "C-" + phone[-4:], "pin_set": True}
        return web.json_response({"customer": cust})

    @staticmethod
    def _pin(a: dict[str, Any]) -> web.Response:
        if str(a.get("pin")) == PIN:
            return web.json_response({"result": {"ok": True}})
        return web.json_response({"result": {"ok": False, "tries_left": 2}}, status=403)

    @staticmethod
    def _site(a: dict[str, Any]) -> web.Response:
        name = SITES.get(str(a.get("site_id", "")).upper())
        if name is None:
            return web.json_response({"error": "no such site"}, status=404)
        return web.json_response({"site": {"name": name, "asset_type": "substation"}})

    def __enter__(self) -> BackOffice:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def between(self, t0: float, t1: float) -> list[dict[str, Any]]:
        with self._lock:
            return [{"name": n, "args": a} for t, n, a in self.calls if t0 <= t <= t1]


def plan_file(plan: Plan, tmp: Path, hooks: int, target_port: int) -> Path:
    """The plan as the bench runs it: its webhooks on the fake back office, its transfer
    targets on the bench's SIP peer; everything else as shipped (`extends`)."""
    base_path = REPO / "dialplans" / plan.file
    if plan.name == "example":
        return base_path
    base = yaml.safe_load(base_path.read_text())
    over: dict[str, Any] = {"extends": str(base_path), "version": 1, "tools": {}}
    for name, tool in base.get("tools", {}).items():
        if "http" in tool:
            url = tool["http"]["url"].replace("http://127.0.0.1:8080", f"http://127.0.0.1:{hooks}")
            over["tools"][name] = {"http": {"url": url}}
    local = {t: f"sip:{t}@127.0.0.1:{target_port}" for t in plan.targets}
    over["defaults"] = {"transfer_targets": local}
    routes = []
    for route in base.get("routes", []):
        fields = dict(plan.route_overrides.get(route["name"], {}))
        if "transfer_targets" in route:
            fields["transfer_targets"] = {t: local[t] for t in route["transfer_targets"]
                                          if t in local}  # fmt: skip
        if fields:
            routes.append(route | fields)
    if routes:
        over["routes"] = routes
    path = tmp / f"{plan.name}-bench.yaml"
    path.write_text(json.dumps(over, indent=1))
    return path


# ------------------------------------------------------------------ items to calls


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = yaml.safe_load(path.read_text())["items"]
    names = voices.available()
    for k, item in enumerate(items):
        item["index"] = k
        item.setdefault("voice", names[k % len(names)])
        if item["voice"] not in names:  # flite missing: the next piper voice
            item["voice"] = names[k % len([n for n in names if n.startswith("piper")])]
        item.setdefault("noise", None)
        item.setdefault("tags", [])
    return items


@dataclass
class Prepared:
    argv: list[str]
    utter: list[tuple[str, int, int]]  # (kind "play"|"say", index among says, voiced end ms)
    report: Path
    record: Path
    caller: str


def prepare(item: dict[str, Any], tmp: Path, uri: str, caller: str) -> Prepared:
    """The `dial` command line for an item, with its utterances rendered to WAVs."""
    d = tmp / item["id"]
    d.mkdir(parents=True, exist_ok=True)
    argv = ["--from-user", caller, "--rate", str(voices.RATE), "--turn-gap", str(GAP_S),
            "--timeout", "20"]  # fmt: skip
    utter: list[tuple[str, int, int]] = []
    says, hold, spoken_s = 0, 0.0, 0.0
    for n, turn in enumerate(item["turns"]):
        if isinstance(turn, dict) and "silence" in turn:
            hold = float(turn["silence"])
            continue
        text = turn["say"] if isinstance(turn, dict) else turn
        x = voices.render(text, item["voice"])
        end = voices.voiced_end_ms(x)
        x = voices.with_noise(x, item["noise"], seed=item["index"] * 10 + n)
        spoken_s += len(x) / voices.RATE
        if isinstance(turn, dict) and "at" in turn:
            if n:
                raise ValueError(f"{item['id']}: only the first turn can be said at a time")
            # a tail of silence: `dial` waits for the bot's reply before its next --say
            tail = np.zeros(int(3.0 * voices.RATE), np.int16)
            wav = voices.write_wav(d / "play.wav", np.concatenate([x, tail]))
            argv += ["--play", str(wav), "--play-at", str(turn["at"])]
            utter.append(("play", -1, end))
        else:
            wav = voices.write_wav(d / f"say{says}.wav", x)
            argv += ["--say", str(wav)]
            utter.append(("say", says, end))
            says += 1
    exp = item.get("expect") or {}
    if says and (hold or exp.get("hangup") or "transfer" in exp):
        # say nothing and hold on: the call ends when the bot ends it (or at the deadline)
        wav = voices.write_wav(d / f"say{says}.wav", np.zeros(voices.RATE // 5, np.int16))
        argv += ["--say", str(wav)]
        hold = hold or 8.0
    if says:
        duration = PLANS[item["plan"]].greeting_hold_s + spoken_s + 10.0 * len(item["turns"]) + hold
    else:
        plan = PLANS[item["plan"]]
        duration = hold or (plan.greeting_hold_s if exp.get("greeting_kept") else 20.0)
    report, record = d / "report.json", d / "heard.wav"
    argv += ["--duration", f"{duration:.1f}", "--report", str(report), "--record", str(record)]
    return Prepared(["dial", uri, *argv], utter, report, record, caller)


# ------------------------------------------------------------------ the engine's side


class EngineLog:
    """The serve log (JSON lines of every process), read by call."""

    def __init__(self, eng: engine.EngineProc) -> None:
        self.eng = eng

    def by_call(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.eng.logs():
            if e.get("call_id"):
                out[str(e["call_id"])].append(e)
        return out


def _ts(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()


def read_cdrs(path: Path) -> dict[str, dict[str, Any]]:
    """Call records by caller number (each item calls from a number of its own)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                out[str(rec.get("caller"))] = rec
    return out


def observe(
    item: dict[str, Any],
    prep: Prepared,
    rep: dict[str, Any],
    cdr: dict[str, Any] | None,
    lines: list[dict[str, Any]],
    backoffice: list[dict[str, Any]],
    reference: tuple[int, int, list[str]],
) -> Observed:
    tools = list(backoffice)
    seen = {c["name"] for c in tools}
    for t in (cdr or {}).get("tools", []):  # tools without a webhook (python): names only
        if t.get("name") not in seen and t.get("name") not in ("transfer", "hangup"):
            tools.append({"name": t.get("name"), "args": {}})
    bot = [str(e.get("text", "")) for e in lines if e.get("event") == "turn.assistant"]
    user_lines = [e for e in lines if e.get("event") == "turn.user"]
    first_user = min((_ts(e) for e in user_lines), default=float("inf"))
    before = [str(e.get("text", "")) for e in lines
              if e.get("event") == "turn.assistant" and _ts(e) < first_user]  # fmt: skip
    after_transfer = None
    outcome = [e for e in lines if e.get("event") == "transfer outcome" and e.get("ok")]
    ended = [e for e in lines if e.get("event") == "call ended"]
    if outcome and ended:
        after_transfer = _ts(ended[-1]) - _ts(outcome[0])
    transfer = rep.get("transfer") or {}
    utterances = []
    turns = rep.get("turns") or []
    for kind, idx, end in prep.utter:
        if kind == "play" and rep.get("play_start_ms") is not None and idx == -1:
            # with --say turns after it, play_start_ms is the last said WAV's: use --play-at
            start = int(float(prep.argv[prep.argv.index("--play-at") + 1]) * 1000)
            utterances.append((start, start + end))
        elif kind == "say" and idx < len(turns):
            utterances.append((int(turns[idx]["start_ms"]), int(turns[idx]["start_ms"]) + end))
    return Observed(
        tool_calls=tools,
        bot_turns=bot,
        user_turns=[str(e.get("text", "")) for e in user_lines],
        transfer_target=transfer.get("target"),
        after_transfer_s=after_transfer,
        ended_by=str(rep.get("ended_by")),
        duration_s=float(rep.get("duration_ms", 0)) / 1000,
        energy=list(rep.get("energy_dbfs") or []),
        utterances=utterances,
        reference_greeting_ms=reference[0],
        greeting_window_ms=reference[1],
        reference_turns=reference[2],
        bot_turns_before_caller=before,
    )


# ------------------------------------------------------------------ running


@dataclass
class Outcome:
    item: dict[str, Any]
    verdict: Verdict
    observed: Observed
    seconds: float


def _today() -> date:
    return datetime.now(ZoneInfo("Europe/Berlin")).date()


def _dial(prep: Prepared) -> tuple[dict[str, Any], float, float]:
    t0 = time.monotonic()
    res = subprocess.run(engine.cli(*prep.argv), capture_output=True, timeout=300, cwd=REPO)
    t1 = time.monotonic()
    if not prep.report.exists():
        err = res.stderr.decode(errors="replace")[-500:]
        return {"answered": False, "ended_by": f"dial failed: {err}"}, t0, t1
    return json.loads(prep.report.read_text()), t0, t1


def run_plan(
    plan: Plan,
    items: list[dict[str, Any]],
    tmp: Path,
    office: BackOffice,
    target_port: int,
    callers: int,
    references: dict[str, tuple[int, int, list[str]]],
    tag: str,
) -> list[Outcome]:
    plan_path = plan_file(plan, tmp, office.server.port, target_port)
    cdr_path = tmp / f"cdr-{plan.name}-{tag}.jsonl"
    os.environ["TELEPHONY_BOT_CDR_PATH"] = str(cdr_path)
    eng = engine.start(
        tmp, "serve", "--dialplan", str(plan_path),
        "--local-engine-port", str(engine.free_port()), "--grace", "2",
        ready_event="worker listening", name=f"serve-{plan.name}-{tag}",
    )  # fmt: skip
    try:
        uri = f"sip:{plan.number}@127.0.0.1:{eng.sip_port}"
        if plan.name not in references and any(i["expect"].get("greeting_kept") for i in items):
            silent = {"id": f"{plan.name}-reference", "plan": plan.name, "voice": "piper-joe",
                      "noise": None, "index": 999, "tags": [],
                      "turns": [{"silence": plan.greeting_hold_s}], "expect": {}}  # fmt: skip
            prep = prepare(silent, tmp / tag, uri, plan.caller_prefix + "999")
            rep, _, _ = _dial(prep)
            energy = rep.get("energy_dbfs") or []
            window = int(plan.greeting_hold_s * 1000)
            time.sleep(1.0)  # its call record is written after its end
            cdr = read_cdrs(cdr_path).get(prep.caller)
            lines = EngineLog(eng).by_call().get(str(cdr["call_id"]), []) if cdr else []
            said = [str(e.get("text", "")) for e in lines if e.get("event") == "turn.assistant"]
            references[plan.name] = (voiced_ms(energy, 0, window), window, said)
            print(
                f"  {plan.name}: reference greeting {first_turn_ms(energy)} ms to its first "
                f"pause, {references[plan.name][0]} ms voiced in {window} ms",
                flush=True,
            )
        preps = []
        for item in items:
            caller = item.get("caller") or f"{plan.caller_prefix}{item['index']:03d}"
            preps.append(prepare(item, tmp / tag, uri, caller))

        def one(k: int) -> tuple[dict[str, Any], float, float]:
            return _dial(preps[k])

        with ThreadPoolExecutor(callers) as pool:
            dialled = []
            futures = []
            for k in range(len(items)):
                futures.append(pool.submit(one, k))
                if callers > 1:
                    time.sleep(0.7)  # callers arrive spread out, not in one burst
            for k, f in enumerate(futures):
                dialled.append(f.result())
                if callers == 1:
                    _progress(items[k], dialled[-1][0])
        time.sleep(1.0)  # the last call's record is written after its end
        cdrs = read_cdrs(cdr_path)
        log = EngineLog(eng).by_call()
    finally:
        eng.stop()
    out = []
    targets = {t: f"sip:{t}@127.0.0.1:{target_port}" for t in plan.targets}
    for item, prep, (rep, t0, t1) in zip(items, preps, dialled, strict=True):
        cdr = cdrs.get(prep.caller)
        lines = log.get(str(cdr["call_id"]), []) if cdr else []
        obs = observe(item, prep, rep, cdr, lines, office.between(t0, t1),
                      references.get(plan.name, (0, 0, [])))  # fmt: skip
        verdict = judge(item, obs, _today(), targets)
        if not rep.get("answered"):
            verdict.ok = False
            verdict.why.insert(0, f"call not answered: {rep.get('sip_status')} "
                                  f"{rep.get('reason') or rep.get('ended_by')}")  # fmt: skip
        if cdr is None:
            verdict.why.append("(no call record)")
        out.append(Outcome(item, verdict, obs, t1 - t0))
    return out


def _progress(item: dict[str, Any], rep: dict[str, Any]) -> None:
    print(f"    {item['id']:<32} {item['voice']:<15} answered={rep.get('answered')} "
          f"ended_by={rep.get('ended_by')}", flush=True)  # fmt: skip


# ------------------------------------------------------------------ results


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))], 1)


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    per_plan: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        per_plan[o.item["plan"]].append(o)
    lat = [x for o in outcomes for x in o.verdict.latencies_ms]
    tags: Counter[str] = Counter()
    tag_fail: Counter[str] = Counter()
    for o in outcomes:
        for t in o.item["tags"]:
            tags[t] += 1
            tag_fail[t] += not o.verdict.ok
    cut = [o.verdict.greeting_cut for o in outcomes if o.verdict.greeting_cut is not None]
    return {
        "items": len(outcomes),
        "utterances": sum(len(o.observed.utterances) for o in outcomes),
        "success": sum(o.verdict.ok for o in outcomes),
        "success_pct": round(100 * sum(o.verdict.ok for o in outcomes) / max(1, len(outcomes)), 1),
        "per_plan": {
            p: {
                "items": len(os_),
                "success": sum(o.verdict.ok for o in os_),
                "success_pct": round(100 * sum(o.verdict.ok for o in os_) / len(os_), 1),
            }
            for p, os_ in sorted(per_plan.items())
        },  # fmt: skip
        "per_tag": {t: {"items": n, "failed": tag_fail[t]} for t, n in sorted(tags.items())},
        "latency_ms": {
            "p50": _pct(lat, 50),
            "p95": _pct(lat, 95),
            "n": len(lat),
            "mean": round(statistics.mean(lat), 1) if lat else None,
        },  # fmt: skip
        "lost_utterances": sum(o.verdict.lost for o in outcomes),
        "greetings_cut_by_backchannel": sum(bool(c) for c in cut),
        "backchannel_items": len(cut),
    }


def item_rows(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [
        {
            "id": o.item["id"],
            "plan": o.item["plan"],
            "voice": o.item["voice"],
            "noise": o.item["noise"],
            "ok": o.verdict.ok,
            "why": o.verdict.why,
            "latencies_ms": o.verdict.latencies_ms,
            "lost": o.verdict.lost,
            "greeting_cut": o.verdict.greeting_cut,
            "heard": o.observed.user_turns,
            "bot": o.observed.bot_turns,
            "tools": o.observed.tool_calls,
            "transfer": o.observed.transfer_target,
            "ended_by": o.observed.ended_by,
            "seconds": round(o.seconds, 1),
        }  # fmt: skip
        for o in outcomes
    ]


def print_table(result: dict[str, Any]) -> None:
    one = result["runs"].get("1")
    four = result["runs"].get("4")
    print("\n| plan | items | success |")
    print("|---|---|---|")
    if one:
        s = one["summary"]
        for p, v in s["per_plan"].items():
            print(f"| {p} | {v['items']} | {v['success']} ({v['success_pct']} %) |")
        print(f"| **all** | {s['items']} | **{s['success']} ({s['success_pct']} %)** |")
    print("\n| callers | success | reply p50 ms | p95 ms | n | lost utterances | "
          "greetings cut by a backchannel |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for n, run in (("1", one), ("4", four)):
        if run:
            s = run["summary"]
            lat = s["latency_ms"]
            print(f"| {n} | {s['success_pct']} % | {lat['p50']} | {lat['p95']} | {lat['n']} | "
                  f"{s['lost_utterances']} | {s['greetings_cut_by_backchannel']} of "
                  f"{s['backchannel_items']} |")  # fmt: skip
    if one:
        failing = [r for r in one["items"] if not r["ok"]]
        if failing:
            print(f"\nfailing ({len(failing)}):")
            for r in failing:
                print(f"  {r['id']:<32} {'; '.join(r['why'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", action="append", choices=sorted(PLANS), help="only this plan")
    ap.add_argument("--ids", default="", help="only these items (comma separated)")
    ap.add_argument("--tag", default="", help="only items with this tag")
    ap.add_argument("--limit", type=int, default=0, help="at most N items per plan")
    ap.add_argument("--callers", default="1,4", help="runs: 1 caller at a time, 4 at once")
    ap.add_argument(
        "--four-limit", type=int, default=12, help="items per plan in the 4-caller run (0: all)"
    )
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="write conversation_baseline.json (the before of a before/after)",
    )
    ap.add_argument("--out", help="results file (default bench/results/conversation.json)")
    args = ap.parse_args()

    items = load_corpus()
    if args.plan:
        items = [i for i in items if i["plan"] in args.plan]
    if args.ids:
        wanted = set(args.ids.split(","))
        items = [i for i in items if i["id"] in wanted]
    if args.tag:
        items = [i for i in items if args.tag in i["tags"]]
    for key, value in {"HOSPITAL_API_TOKEN": "bench-hospital", "BANK_API_TOKEN": "bench-bank",
                       "FIELD_API_TOKEN": "bench-field", "TELEPHONY_BOT_LOGGING_TRANSCRIPTS":
                       "true", "HF_HUB_OFFLINE": "1"}.items():  # fmt: skip
        os.environ[key] = value
    # The plans name OPENAI_API_KEY for their realtime routes; serve refuses a plan whose
    # offline routes need none when it is unset (issue 16), so the bench sets a dummy.
    os.environ.setdefault("OPENAI_API_KEY", "bench-unused")
    runs: dict[str, Any] = {}
    references: dict[str, tuple[int, int, list[str]]] = {}
    started = time.monotonic()
    out = Path(args.out) if args.out else RESULTS / (
        "conversation_baseline.json" if args.baseline else "conversation.json")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> dict[str, Any]:
        """The results so far (after every plan: a run cut short keeps what it did)."""
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, "
            f"Python {platform.python_version()}",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": _commit(),
            "corpus": {
                "items": len(items),
                "voices": sorted({i["voice"] for i in items}),
                "noisy": sum(1 for i in items if i["noise"]),
            },  # fmt: skip
            "note": "shared 2-core machine: latencies are noisy",
            "seconds": round(time.monotonic() - started),
            "runs": runs,
        }
        out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    with tempfile.TemporaryDirectory(prefix="conv-bench-") as tmpname, BackOffice() as office:
        tmp = Path(tmpname)
        target = engine.start(tmp, "worker", "--provider", "echo", name="transfer-target")
        try:
            for n in [int(c) for c in args.callers.split(",") if c]:
                outcomes: list[Outcome] = []
                for name in [p for p in PLANS if any(i["plan"] == p for i in items)]:
                    chosen = [i for i in items if i["plan"] == name]
                    limit = args.limit or (args.four_limit if n > 1 else 0)
                    if limit:
                        chosen = chosen[:limit]
                    print(f"{name}: {len(chosen)} items, {n} caller(s) at a time", flush=True)
                    outcomes += run_plan(PLANS[name], chosen, tmp, office, target.sip_port, n,
                                         references, f"c{n}")  # fmt: skip
                    runs[str(n)] = {"summary": summarise(outcomes), "items": item_rows(outcomes)}
                    save()
        finally:
            target.stop()
    print_table(save())
    print(f"\nwrote {out}")


def _commit() -> str:
    with contextlib.suppress(Exception):
        # the engine's and the plans' last commit (what was measured), not the bench's
        cmd = ["git", "log", "-1", "--format=%h", "--", "telephony_bot", "dialplans"]
        return subprocess.run(cmd, capture_output=True,
                              text=True, cwd=REPO).stdout.strip()  # fmt: skip
    return ""


if __name__ == "__main__":
    main()
