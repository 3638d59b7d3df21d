"""Sentence-embedding benchmark (`telephony_bot/local_engine/embedder.py`): what the packaged
all-MiniLM-L6-v2 costs on this machine, and how well it tells the example plans' intents apart
when callers use their own words.

Measures load time, resident memory added (onnxruntime import + model), ms per utterance (one
short sentence, and the 30 first example sentences of the plans as one batch) with 1 and 2
onnxruntime threads, the published sentence-transformers similarities as a check, and, for
each caller phrasing in `CALLERS`, the state's intents ranked by their best cosine over the
intent's examples: the top intent, its score and the runner-up (what a threshold is picked
from). `tests/unit/test_embedder.py` asserts the top intents.

Writes bench/results/embedder.json and prints a table. Run: `python -m bench.embedder`.
Timings are medians on a shared 2-core machine: noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIALPLANS = ROOT / "dialplans"
RESULT = Path(__file__).parent / "results" / "embedder.json"
PLANS = ("hospital", "bank", "field_inspection")

# sentence-transformers' quick start with all-MiniLM-L6-v2 publishes these similarities
PUBLISHED = (
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
)


@dataclass(frozen=True)
class Caller:
    """What a caller says in a plan's state, and the intent they mean (None: none of them)."""

    plan: str
    state: str
    text: str
    expect: str | None


# Written as callers talk, not as paraphrases of the plans' examples: (plan, state) -> what
# the caller says and the intent they mean (None: none of the state's intents).
_SAID: dict[tuple[str, str], list[tuple[str, str | None]]] = {
    ("hospital", "welcome"): [  # urgent / book / goodbye
        ("yeah hi, um, I was hoping to get my knee looked at sometime next week", "book"),
        ("could I come in to see someone on Tuesday", "book"),
        ("I'd like to make a booking with the heart clinic please", "book"),
        ("hi, I need to get an x-ray done, is Friday possible", "book"),
        ("my heart's been racing all night and I feel really dizzy", "urgent"),
        ("my husband collapsed and he's not waking up", "urgent"),
        ("can I speak with one of the nurses on duty", "urgent"),
        ("actually never mind, I'll call back later, bye", "goodbye"),
        ("nope, that's everything, thank you", "goodbye"),
        ("what's the weather going to be like in Berlin", None),
    ],
    ("hospital", "offer"): [  # accept / other_day
        ("yes that works, the name is Maria Lopez, born fourth of July 1990", "accept"),
        ("perfect, go ahead and put me down for that one", "accept"),
        ("hmm, that's no good for me, have you got anything on Thursday", "other_day"),
        ("I'm at work then, is there anything later in the week", "other_day"),
    ],
    ("bank", "identify"): [  # give_pin / lost_card / advisor
        ("can you put me through to an actual human", "advisor"),
        ("I'd rather speak to someone in person about this", "advisor"),
        ("I think someone took my wallet, my debit card is gone", "lost_card"),
        ("I can't find my bank card anywhere, can you cancel it", "lost_card"),
        ("okay, the number is 7 7 3 1", "give_pin"),
        ("do you sell concert tickets", None),
    ],
    ("bank", "balance"): [  # repeat / done / advisor
        ("sorry, what was that amount again?", "repeat"),
        ("great, that's it from me, thanks, bye", "done"),
        ("there's a charge on my statement I don't recognise", "advisor"),
    ],
    ("field_inspection", "site"): [  # give_site / dispatch
        ("I'm calling from substation four one two", "give_site"),
        ("get me the dispatcher, please", "dispatch"),
    ],
    ("field_inspection", "defect"): [  # give_defect / no_defects
        ("the cooling fan on transformer two is rattling badly", "give_defect"),
        ("everything looked fine, I didn't find any problems", "no_defects"),
    ],
}
CALLERS: tuple[Caller, ...] = tuple(
    Caller(plan, state, text, expect)
    for (plan, state), said in _SAID.items()
    for text, expect in said
)


def state_intents(plan: str) -> dict[str, dict[str, list[str]]]:
    """{state: {intent: examples}} of the plan's offline flows (defaults' and routes')."""
    from telephony_bot.dialplan.loader import PlaceholderEnv, load

    loaded = load(DIALPLANS / f"{plan}.yaml", env=PlaceholderEnv({})).plan
    flows = [loaded.defaults.flow] + [r.flow for r in loaded.routes]
    out: dict[str, dict[str, list[str]]] = {}
    for flow in flows:
        if flow is None:
            continue
        for sname, state in flow.states.items():
            intents = {i.name: list(i.examples) for i in state.intents if i.examples}
            if intents:
                out.setdefault(sname, {}).update(intents)
    return out


def rank(
    embed: Callable[[Sequence[str]], np.ndarray],
    text: str,
    intents: Mapping[str, Sequence[str]],
) -> list[tuple[str, float]]:
    """The intents, best first, each scored by its best cosine over its examples."""
    names = list(intents)
    examples = [e for n in names for e in intents[n]]
    vectors = embed([text, *examples])
    sims = vectors[1:] @ vectors[0]
    scores, at = {}, 0
    for n in names:
        scores[n] = float(sims[at : at + len(intents[n])].max())
        at += len(intents[n])
    return sorted(scores.items(), key=lambda kv: -kv[1])


def score_table(embed: Callable[[Sequence[str]], np.ndarray]) -> list[dict[str, Any]]:
    plans = {p: state_intents(p) for p in PLANS}
    rows = []
    for c in CALLERS:
        ranked = rank(embed, c.text, plans[c.plan][c.state])
        (top, best), (second, runner) = ranked[0], ranked[1]
        rows.append(
            {
                "plan": c.plan,
                "state": c.state,
                "text": c.text,
                "expect": c.expect,
                "top": top,
                "best": round(best, 3),
                "runner_up": second,
                "runner_up_score": round(runner, 3),
                "right": top == c.expect if c.expect else None,
            }
        )
    return rows


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    fn()  # warm
    ts = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - start) * 1000)
    ts.sort()
    return {
        "p50": round(statistics.median(ts), 2),
        "p95": round(ts[int(0.95 * (len(ts) - 1))], 2),
        "n": n,
    }


def run(repeats: int) -> dict[str, Any]:
    rss0 = _rss_mb()
    start = time.perf_counter()
    import onnxruntime  # noqa: F401  (the local engine has it loaded already: piper, silero)
    import tokenizers  # noqa: F401

    from telephony_bot.local_engine import embedder as em

    import_s, rss1 = time.perf_counter() - start, _rss_mb()
    start = time.perf_counter()
    one = em.Embedder(threads=1)
    one.embed(["hello"])
    load_s = time.perf_counter() - start
    rss_import, rss_model = rss1 - rss0, _rss_mb() - rss1

    plans = {p: state_intents(p) for p in PLANS}
    plan_examples = [
        e for p in PLANS for st in plans[p].values() for ex in st.values() for e in ex
    ][:30]
    single = "yeah hi, um, I was hoping to get my knee looked at sometime next week"
    timing = {}
    for threads in (1, 2):
        e = one if threads == 1 else em.Embedder(threads=2)
        timing[str(threads)] = {
            "single": _timed(lambda e=e: e.embed([single]), repeats),
            "batch30": _timed(lambda e=e: e.embed(plan_examples), max(5, repeats // 10)),
        }
    same = np.array_equal(one.embed(plan_examples), em.Embedder(threads=2).embed(plan_examples))

    published = []
    for a, b, ref in PUBLISHED:
        va, vb = one.embed([a, b])
        published.append({"a": a, "b": b, "published": ref, "here": round(float(va @ vb), 4)})

    rows = score_table(one.embed)
    graded = [r for r in rows if r["right"] is not None]
    return {
        "model": em.MODEL_ID,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "rss_import_mb": round(rss_import, 1),
        "rss_model_mb": round(rss_model, 1),
        "batch_examples": len(plan_examples),
        "timing_ms": timing,
        "threads_1_and_2_identical": bool(same),
        "published_similarities": published,
        "intent_top1": f"{sum(r['right'] for r in graded)}/{len(graded)}",
        "scores": rows,
    }


def table(d: dict[str, Any]) -> str:
    t = d["timing_ms"]
    lines = [
        f"model {d['model']}: load {d['load_s']} s and +{d['rss_model_mb']} MB RSS "
        f"(importing onnxruntime and tokenizers first: {d['import_s']} s, "
        f"+{d['rss_import_mb']} MB)",
        f"threads | one sentence p50/p95 ms | batch of {d['batch_examples']} p50/p95 ms",
    ]
    for k, v in t.items():
        lines.append(
            f"{k} | {v['single']['p50']} / {v['single']['p95']} | "
            f"{v['batch30']['p50']} / {v['batch30']['p95']}"
        )
    lines.append("published vs here: " + ", ".join(
        f"{p['published']:.4f}/{p['here']:.4f}" for p in d["published_similarities"]))  # fmt: skip
    lines.append(f"top intent right: {d['intent_top1']}")
    lines.append("plan/state | caller | expect | top (score) | runner-up (score)")
    for r in d["scores"]:
        mark = {True: "ok", False: "WRONG", None: "-"}[r["right"]]
        lines.append(
            f"{r['plan']}/{r['state']} | {r['text']} | {r['expect']} | "
            f"{r['top']} ({r['best']}) | {r['runner_up']} ({r['runner_up_score']}) | {mark}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    d = run(args.repeats)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(d, indent=2) + "\n")
    print(table(d))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
