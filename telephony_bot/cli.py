"""`telephony-bot`: serve | worker | dial | frontdoor | ... Exit codes: 0 ok, 1 runtime error,
2 usage error."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telephony_bot import log
from telephony_bot.errors import ConfigError, TelephonyBotError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _sip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dialplan",
        help="dialplan YAML file; without one, --provider must say what answers every call "
        "(e.g. --provider echo, the diagnostic)",
    )
    p.add_argument(
        "--config",
        help="engine settings YAML (mqtt, cdr, admin, outbound); "
        "TELEPHONY_BOT_<SECTION>_<FIELD> variables override it",
    )
    p.add_argument("--sip-host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--sip-port", type=int, default=5060, help="SIP port (default 5060)")
    p.add_argument("--provider", help="use this provider for every route (e.g. echo)")
    p.add_argument("--rtp-port", type=int, default=10000, help="first RTP port (default 10000)")
    p.add_argument(
        "--bridge-rate",
        type=int,
        default=8000,
        help="media bridge clock in Hz (8000; 16000 keeps G.722 wideband)",
    )
    p.add_argument(
        "--codecs",
        default="PCMU/8000,PCMA/8000,G722/16000",
        help="codecs offered, in order of preference (default PCMU,PCMA,G722)",
    )
    p.add_argument("--transports", default="udp,tcp", help="SIP transports (default udp,tcp)")
    p.add_argument("--max-call-seconds", type=float, help="hang up calls after this long")
    p.add_argument("--echo-delay-ms", type=int, help="delay of the echo provider")
    p.add_argument("--ring-ms", type=int, default=0, help="ring this long before answering")
    p.add_argument("--grace", type=float, default=30.0, help="seconds calls may finish at stop")
    p.add_argument("--log-format", choices=("console", "json"), help="log format")
    p.add_argument("--log-level", default=None, help="debug | info | warning | error")
    p.add_argument(
        "--admin-port",
        type=int,
        help="admin HTTP API port (overrides admin.port; the token comes from admin.token "
        "or TELEPHONY_BOT_ADMIN_TOKEN, never from the command line)",
    )
    p.add_argument("--admin-host", help="admin API address (default admin.host, 127.0.0.1)")
    p.add_argument(
        "--no-prewarm",
        action="store_true",
        help="answer at once and open the model's session after the 200 OK (default: open "
        "it and prepare the greeting while the call rings)",
    )
    p.add_argument(
        "--port-rate",
        type=int,
        default=0,
        help="rate of the engine's bridge ports (default 0: the bridge rate; 24000 makes "
        "pjmedia resample to 24 kHz in C instead of the engine)",
    )
    p.add_argument(
        "--media-port",
        choices=("auto", "native", "python"),
        default="auto",
        help="how call audio crosses from pjmedia into the engine: native (a pjmedia port "
        "in C, no Python on the media clock), python (pjsua2 AudioMediaPort callbacks), "
        "auto (default: native when its start-up self-check passes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telephony-bot",
        description="SIP voice-bot engine: answers calls and talks to callers through a "
        "realtime speech-to-speech session.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the engine: N SIP workers under a supervisor")
    _sip_args(serve)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--front-door",
        choices=("auto", "kamailio", "none"),
        default="auto",
        help="SIP front door on --sip-port: kamailio (dispatcher balancing the workers), "
        "none (each worker on its own port), auto (default: kamailio when --workers > 1)",
    )
    serve.add_argument(
        "--worker-port",
        type=int,
        help="first private SIP port of the workers behind the front door "
        "(default: --sip-port + 1)",
    )
    serve.add_argument(
        "--run-dir",
        help="front door files: kamailio.cfg, dispatcher list, control sockets "
        "(default: $TMPDIR/telephony-bot-front-<sip-port>)",
    )
    serve.add_argument(
        "--front-door-address",
        metavar="HOST:PORT",
        help="workers on several machines: the public address of the front door they sit "
        "behind (run elsewhere, --front-door none here); worker 0 registers the trunks with "
        "it as Contact (default: this serve's own front door, when it runs one)",
    )
    serve.add_argument(
        "--no-register",
        action="store_true",
        help="no worker here registers the trunks (another machine's worker 0 does)",
    )
    serve.add_argument(
        "--local-engine-port",
        type=int,
        default=8765,
        help="port of the offline engine serve starts when a route needs it (default 8765)",
    )

    worker = sub.add_parser("worker", help="run one SIP worker (up to 4 calls)")
    _sip_args(worker)
    worker.add_argument("--worker-id", type=int, default=0)
    worker.add_argument("--rtp-port-range", type=int, default=100)
    worker.add_argument("--max-calls", type=int, default=4)
    worker.add_argument(
        "--tls-port",
        type=int,
        help="port of this worker's TLS listener (overrides sip.tls.port; 0: none); serve "
        "sets it for each worker",
    )
    worker.add_argument("--mqtt-node", help="MQTT node name of this worker (default: mqtt.node)")
    worker.add_argument(
        "--node-workers",
        type=int,
        default=1,
        help="workers of this node sharing its outbound.max_per_minute (serve sets it)",
    )
    worker.add_argument(
        "--no-admin", action="store_true", help="no admin API even if the config has a port"
    )
    worker.add_argument(
        "--no-register",
        action="store_true",
        help="do not register the config's trunks (another worker does: serve's worker 0)",
    )
    worker.add_argument(
        "--front-door-address",
        default="",
        metavar="HOST:PORT",
        help="this worker is behind that front door: trunk registrations name it as their "
        "Contact and send their REGISTERs through it (serve sets this)",
    )
    worker.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="IP",
        help="the front door's address: its INVITEs were checked there (repeat for several)",
    )
    worker.add_argument(
        "--media-loopback",
        action="store_true",
        help="diagnostic: echo each caller inside pjmedia, bypassing the engine",
    )

    dial = sub.add_parser("dial", help="place a real SIP call (pjsua2) and report what was heard")
    dial.add_argument("uri", help="e.g. sip:100@127.0.0.1:5060")
    dial.add_argument("--play", help="WAV file (mono PCM16) to send")
    dial.add_argument("--play-at", type=float, default=0.0, help="seconds after answer to play")
    dial.add_argument("--record", help="write what was received to this WAV file")
    dial.add_argument("--duration", type=float, default=5.0, help="seconds to stay on the call")
    dial.add_argument("--dtmf", default="", help="RFC 4733 digits to send, e.g. 12#")
    dial.add_argument("--dtmf-at", type=float, default=0.5, help="seconds after answer for DTMF")
    dial.add_argument("--report", help="write a JSON report here")
    dial.add_argument("--codec", default="PCMU", help="codec to offer: PCMU, PCMA, G722, ...")
    dial.add_argument("--rate", type=int, default=16000, help="audio rate for play/record")
    dial.add_argument("--from-user", default="dial", help="caller id user part")
    dial.add_argument("--local-port", type=int, default=0, help="local SIP port (0: any)")
    dial.add_argument("--rtp-port", type=int, default=0, help="local RTP port (0: any)")
    dial.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for answer")
    dial.add_argument("--header", action="append", default=[], help="extra SIP header 'Name: v'")
    dial.add_argument(
        "--say",
        action="append",
        default=[],
        help="WAV to say once the far end spoke and paused (repeat: a conversation)",
    )
    dial.add_argument("--turn-gap", type=float, default=1.0, help="pause that ends a bot turn (s)")
    dial.add_argument("--local-host", default="", help="address to call from (e.g. 127.0.0.2)")
    dial.add_argument(
        "--auth-user",
        default="",
        help="digest user for a 401/407 challenge; the password comes from the environment "
        "variable TELEPHONY_BOT_DIAL_PASSWORD",
    )
    dial.add_argument(
        "--refuse-transfer",
        type=int,
        default=0,
        metavar="STATUS",
        help="answer a REFER with this 4xx-6xx status (e.g. 603) instead of following it",
    )
    dial.add_argument(
        "--srtp",
        choices=("off", "optional", "mandatory"),
        default="off",
        help="offer SRTP (SDES): optional or mandatory (default off: plain RTP)",
    )
    dial.add_argument("--tls-ca", help="CA file the server's TLS certificate must chain to "
                      "(sips: or ;transport=tls URIs; default: the system's CAs)")  # fmt: skip
    dial.add_argument(
        "--tls-no-verify", action="store_true", help="accept any TLS server certificate"
    )
    dial.add_argument("--tls-cert", help="client certificate (PEM), for servers that ask")
    dial.add_argument("--tls-key", help="its private key (PEM)")
    _frontdoor_args(sub)
    rs = sub.add_parser(
        "realtime-server",
        help="the offline engine (ASR, TTS, scripted flows) as an OpenAI-Realtime server",
    )
    rs.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    rs.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    rs.add_argument("--workers", type=int, default=2, help="concurrent ASR/TTS jobs")
    rs.add_argument("--log-format", choices=("console", "json"), help="log format")
    rs.add_argument("--log-level", default=None, help="debug | info | warning | error")

    say = sub.add_parser("say", help="speak a text into a WAV file (offline voice), for dial")
    say.add_argument("text")
    say.add_argument("--out", required=True, help="WAV file to write")
    say.add_argument("--rate", type=int, default=16000, help="sample rate (default 16000)")

    demo = sub.add_parser(
        "demo", help="call a running engine with spoken questions and print the conversation"
    )
    demo.add_argument("uri", nargs="?", default="sip:100@127.0.0.1:5060", help="whom to call")
    demo.add_argument("--ask", action="append", help="a question to say (repeat; default: 3)")
    demo.add_argument("--timeout", type=float, default=90.0, help="seconds for the whole call")
    demo.add_argument("--turn-gap", type=float, default=1.2, help="bot pause that ends its turn")
    demo.add_argument(
        "--keep", type=Path, help="folder to keep the call's recording (heard.wav) and report in"
    )
    demo.add_argument("--log-level", default="warning", help="debug | info | warning | error")

    dp = sub.add_parser("dialplan", help="check, explain and export dialplans")
    dsub = dp.add_subparsers(dest="dialplan_command", required=True)
    v = dsub.add_parser("validate", help="check dialplan files; exit 1 with every error")
    v.add_argument("files", nargs="+")
    v.add_argument(
        "--no-secrets",
        action="store_true",
        help="check the structure on a machine without the production secrets: ${VAR} "
        "references to variables not set are listed, not errors (the engine itself always "
        "refuses a plan whose variables are not set)",
    )
    v.add_argument(
        "--config",
        help="engine settings YAML: match.trunk must then name one of its trunks "
        "(without it any trunk name is accepted)",
    )
    dsub.add_parser("schema", help="print the JSON Schema (for editor completion)")
    r = dsub.add_parser("route", help="explain which route a call would take, and why")
    r.add_argument("file")
    r.add_argument("--to", required=True, help="dialed number, e.g. +4930123456")
    r.add_argument("--from", dest="caller", default="", help="caller number")
    r.add_argument("--at", help="ISO time with offset (default: now), e.g. 2026-12-24T22:00+01:00")
    r.add_argument("--header", action="append", default=[], help="SIP header 'Name: value'")
    r.add_argument("--trunk", default="", help="the trunk the call comes through (trunks:)")
    u = dsub.add_parser(
        "understand",
        help="explain how the offline engine's flow would understand a caller's words",
    )
    u.add_argument("file")
    u.add_argument("words", help="what the caller says, e.g. 'could I come in on Tuesday'")
    u.add_argument("--to", default="", help="dialed number: picks the route (default: defaults)")
    u.add_argument("--from", dest="caller", default="+4917612345678", help="caller number")
    u.add_argument("--state", help="the flow state the caller is in (default: the start)")
    return parser


def _frontdoor_args(sub: Any) -> None:
    fd = sub.add_parser("frontdoor", help="the Kamailio front door: render its config, show state")
    fsub = fd.add_subparsers(dest="frontdoor_command", required=True)
    r = fsub.add_parser(
        "render",
        help="write kamailio.cfg + dispatcher.list for workers anywhere (several machines)",
    )
    r.add_argument(
        "--worker",
        action="append",
        required=True,
        help="a worker's SIP address host:port[/tcp]; repeat for each worker",
    )
    r.add_argument("--sip-host", default="0.0.0.0", help="address Kamailio listens on")
    r.add_argument("--sip-port", type=int, default=5060, help="public SIP port (default 5060)")
    r.add_argument("--transports", default="udp,tcp", help="udp,tcp (default)")
    r.add_argument("--maxload", type=int, default=4, help="calls per worker (default 4)")
    r.add_argument("--ping-interval", type=int, default=2, help="keepalive seconds (default 2)")
    r.add_argument("--out", required=True, help="directory to write the two files into")
    r.add_argument(
        "--run-dir",
        help="directory Kamailio uses at run time for its sockets and the list (default: --out)",
    )
    r.add_argument("--check", action="store_true", help="also check it with `kamailio -c`")
    r.add_argument(
        "--config",
        help="engine settings YAML: its trunks (allow lists, auth) and sip.admission decide "
        "who the front door admits (default: private networks only); the front door also "
        "relays worker 0's REGISTERs for its trunks and keeps their NAT bindings open",
    )
    st = fsub.add_parser("status", help="each worker's state as the front door sees it")
    st.add_argument("--sip-port", type=int, default=5060, help="the public port serve uses")
    st.add_argument("--run-dir", help="front door run dir (default: from --sip-port)")
    st.add_argument("--json", action="store_true", help="print JSON")


def _cmd_frontdoor(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from telephony_bot.frontdoor import kamailio, rpc
    from telephony_bot.frontdoor.render import FrontDoorConfig, WorkerAddress, write
    from telephony_bot.frontdoor.service import default_run_dir

    if args.frontdoor_command == "render":
        from telephony_bot.config import load_engine_settings
        from telephony_bot.frontdoor.render import TrunkRelay
        from telephony_bot.trunk_config import registering

        trunks: tuple[TrunkRelay, ...] = ()
        if args.config:
            engine = load_engine_settings(args.config, secrets=False)
            _check_trunks_behind_front_door(engine)
            regs = registering(engine.trunks).items()
            trunks = tuple(TrunkRelay.of(name, reg) for name, reg in regs)
        out = Path(args.out).resolve()
        cfg = FrontDoorConfig(
            listen_host=args.sip_host,
            listen_port=args.sip_port,
            workers=tuple(WorkerAddress.parse(w) for w in args.worker),
            run_dir=Path(args.run_dir).resolve() if args.run_dir else out,
            transports=_transports(args.transports),
            maxload=args.maxload,
            ping_interval_s=args.ping_interval,
            trunks=trunks,
            trust=_render_trust(args, len(args.worker)),
        )
        path = write(cfg, out)
        if args.check:
            kamailio.check_config(path)
        print(f"wrote {path} and {out / 'dispatcher.list'} ({len(cfg.workers)} workers)")
        print(f"run: kamailio -f {path} -DD -E   (the run dir {cfg.run_dir} must exist)")
        return EXIT_OK
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.sip_port)
    workers = rpc.dispatcher_list(run_dir)
    if args.json:
        rows = [dict(asdict(w), state=w.state, probing=w.probing) for w in workers]
        print(json.dumps(rows, indent=1))
    else:
        print(rpc.status_table(workers))
        refused = rpc.refusals(run_dir)
        if refused:
            print("INVITEs refused: " + ", ".join(f"{k} {v}" for k, v in refused.items()))
    return EXIT_OK


def _render_trust(args: argparse.Namespace, workers: int) -> Any:
    from telephony_bot.config import load_engine_settings
    from telephony_bot.frontdoor import trust

    engine = load_engine_settings(args.config, secrets=False)  # Kamailio reads them itself
    for name, t in engine.trunks.items():
        if t.auth is not None and t.auth.password_file is not None:
            raise ConfigError(
                f"trunks.{name}.auth: the front door reads passwords from its environment; "
                "give password_env (and set that variable where Kamailio runs)"
            )
    return trust.from_settings(engine.trunks, engine.sip.admission, workers, {})


def _transports(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _cmd_say(args: argparse.Namespace) -> int:
    from telephony_bot.local_engine.speech import SpeechUnavailableError, Tts
    from telephony_bot.media.resample import resample_once
    from telephony_bot.sip.dial import write_wav

    try:
        pcm = b"".join(Tts().synthesize(args.text))
    except SpeechUnavailableError as exc:
        raise ConfigError(str(exc)) from None
    write_wav(args.out, resample_once(pcm, 24000, args.rate), args.rate)
    print(f"{args.out}: {len(pcm) / 48000:.2f} s")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from telephony_bot.demo import QUESTIONS, run_demo

    questions = tuple(args.ask) if args.ask else QUESTIONS
    return run_demo(args.uri, questions, args.timeout, args.turn_gap, keep=args.keep)


def _cmd_realtime_server(args: argparse.Namespace) -> int:
    from telephony_bot.local_engine.engine import serve
    from telephony_bot.local_engine.speech import SpeechUnavailableError

    try:
        asyncio.run(serve(args.host, args.port, args.workers))
    except SpeechUnavailableError as exc:
        raise ConfigError(str(exc)) from None
    return EXIT_OK


def _cmd_dialplan(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from telephony_bot.dialplan import loader

    if args.dialplan_command == "schema":
        print(json.dumps(loader.json_schema(), indent=2))
        return EXIT_OK
    if args.dialplan_command == "validate":
        from telephony_bot.errors import DialplanError

        failed = False
        trunks = None
        if args.config:
            from telephony_bot.config import load_engine_settings

            trunks = list(load_engine_settings(args.config, secrets=False).trunks)
        for f in args.files:
            env = loader.PlaceholderEnv(os.environ) if args.no_secrets else None
            try:
                lp = loader.load(f, env=env, trunks=trunks)
            except DialplanError as exc:
                failed = True
                print(str(exc), file=sys.stderr)
                if hint := _unset_env_hint(f, exc):
                    print(hint, file=sys.stderr)
                continue
            plan = lp.plan
            numbers = sorted({_pattern_text(p) for r in plan.routes for p in _patterns(r)})
            structure = ""
            if env is not None and env.unset:
                structure = f" (structure only; not set here: {', '.join(env.unset)})"
            print(
                f"{f}: OK{structure} (version {lp.version}): {len(plan.routes)} routes, "
                f"{len(plan.tools)} tools; numbers: {', '.join(numbers) or '-'}"
            )
            for w in lp.warnings:
                print(f"{f}: warning: {w}")
        return EXIT_RUNTIME if failed else EXIT_OK
    if args.dialplan_command == "understand":
        return _cmd_understand(args)
    from telephony_bot.dialplan.router import CallInfo, effective, match

    lp = loader.load(args.file)
    at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    if at.tzinfo is None:
        raise ConfigError("--at needs a UTC offset, e.g. 2026-12-24T22:00+01:00")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    decision = match(lp.plan, CallInfo(args.to, args.caller, headers, at, args.trunk))
    print(decision.reason)
    if decision.route is None and lp.plan.routes:
        return EXIT_RUNTIME
    eff = effective(lp.plan, decision.route)
    print(f"route: {eff.name or '(defaults)'}; provider: {eff.provider_name}; tools: "
          f"{', '.join(eff.tools) or '-'}; plan version {lp.version}")  # fmt: skip
    return EXIT_OK


def _cmd_understand(args: argparse.Namespace) -> int:
    """`dialplan understand`: the route's flow, in a state, hearing the caller's words: every
    intent's score (by words and by meaning, with the example closest to each), the
    decision, and what the flow would say or do."""
    from datetime import UTC, datetime

    from telephony_bot.dialplan import loader
    from telephony_bot.dialplan.router import CallInfo, effective, match
    from telephony_bot.local_engine import brain, meaning

    lp = loader.load(args.file, env=loader.PlaceholderEnv(os.environ))
    now = datetime.now(UTC)
    route = match(lp.plan, CallInfo(args.to, args.caller, {}, now, "")).route if args.to else None
    flow = effective(lp.plan, route).flow
    if flow is None:
        raise ConfigError(f"route {route.name if route else '(defaults)'} has no flow")
    state = args.state or flow.start
    if state not in flow.states:
        raise ConfigError(f"no state {state!r} in the flow (states: {', '.join(flow.states)})")
    runner = brain.FlowRunner(
        flow, now=now, variables={"caller": args.caller}, meaning=meaning.shared()
    )
    runner.arrive(state)
    intents = [*flow.states[state].intents, *flow.anywhere]
    print(f"route: {route.name if route else '(defaults)'}; state: {state}")
    print(f"heard: {args.words!r}")
    for r in brain.score_intents(intents, args.words, now.date(), runner.meaning):
        by_meaning = "" if r.cosine is None else f"; meaning {r.cosine:.2f} ({r.near!r})"
        print(f"  {r.intent.name:<14} {r.score:.2f}  words {r.words:.2f}{by_meaning}")
    print(
        f"  (taken at {brain.ACCEPT:.2f} and {brain.MARGIN:.2f} ahead of an intent leading "
        f"elsewhere; asked about from {brain.UNSURE:.2f}; meaning: cosine "
        f"{meaning.COS_UNSURE} -> {brain.UNSURE:.2f}, {meaning.COS_ACCEPT} -> {brain.ACCEPT:.2f})"
    )
    for action in runner.hear(args.words):
        print(f"-> {action}")
    return EXIT_OK


def _unset_env_hint(file: str, exc: Any) -> str:
    """What a plan's unset ${VAR}s are: secrets this machine lacks, not mistakes."""
    unset = list(dict.fromkeys(n for i in exc.issues for n in i.unset_env))
    if not unset:
        return ""
    names = ", ".join(unset)
    if all(i.unset_env for i in exc.issues):
        return (
            f"{file}: the plan is valid but for environment variables not set here ({names}): "
            "set them where the engine runs; `dialplan validate --no-secrets` checks the "
            "structure without them"
        )
    return (
        f"{file}: besides the other problems, environment variables are not set here "
        f"({names}); `dialplan validate --no-secrets` checks the structure without them"
    )


def _patterns(route: Any) -> list[Any]:
    m = route.match
    if m is None or m.number is None:
        return []
    return list(m.number) if isinstance(m.number, list) else [m.number]


def _pattern_text(p: Any) -> str:
    if getattr(p, "exact", None):
        return str(p.exact)
    if getattr(p, "prefix", None):
        return f"{p.prefix}*"
    return f"/{getattr(p, 'regex', '')}/"


def _sip_settings(args: argparse.Namespace, plan_max_call: float, engine: Any = None) -> object:
    """The worker's SIP settings: the command line's, with TLS and SRTP from the engine
    config (`sip.tls`, `sip.srtp`, `trunks`)."""
    from telephony_bot.config import SipSettings
    from telephony_bot.trunk_config import SrtpPolicy

    tls = engine.sip.tls if engine is not None else None
    tls_port = getattr(args, "tls_port", None)
    if tls is not None and tls_port is not None:
        tls = tls.model_copy(update={"port": tls_port}) if tls_port else None
    return SipSettings(
        tls=tls,
        srtp=engine.srtp_policy() if engine is not None else SrtpPolicy(),
        host=args.sip_host,
        port=args.sip_port,
        transports=tuple(t.strip() for t in args.transports.split(",") if t.strip()),
        max_calls=getattr(args, "max_calls", 4),
        bridge_rate=args.bridge_rate,
        rtp_port=args.rtp_port,
        rtp_port_range=getattr(args, "rtp_port_range", 100),
        codecs=tuple(c.strip() for c in args.codecs.split(",") if c.strip()),
        worker_id=getattr(args, "worker_id", 0),
        ring_ms=args.ring_ms,
        port_rate=getattr(args, "port_rate", 0),
        media_port=getattr(args, "media_port", "auto"),
        max_call_seconds=(
            args.max_call_seconds if args.max_call_seconds is not None else plan_max_call
        ),
        drain_grace_seconds=args.grace,
        media_loopback=getattr(args, "media_loopback", False),
        register_trunks=not getattr(args, "no_register", False),
        front_door=getattr(args, "front_door_address", ""),
    )


def _load_plan(args: argparse.Namespace, trunks: list[str] | None = None) -> Any:
    from telephony_bot.dialplan import loader

    if args.dialplan:
        return loader.load(args.dialplan, trunks=trunks)
    return loader.load_default(args.provider)


def _cmd_worker(args: argparse.Namespace) -> int:
    from telephony_bot import app
    from telephony_bot.dialplan import loader
    from telephony_bot.dialplan.reload import PlanWatcher
    from telephony_bot.sip.carrier import SipCarrier
    from telephony_bot.sip.inbound import admission_from
    from telephony_bot.worker import Worker, serve_worker

    engine = _engine_settings(args)
    trunks = list(engine.trunks)
    if args.dialplan:
        plans = PlanWatcher([args.dialplan], lambda paths: loader.load(paths, trunks=trunks))
    else:
        plans = PlanWatcher([], lambda _paths: loader.load_default(args.provider))
    plan = plans.current.plan
    if args.echo_delay_ms is not None:
        plan.defaults.echo_delay_ms = args.echo_delay_ms
    for w in plans.current.warnings:
        log.get("dialplan").warning("dialplan warning", warning=w)
    for idle in app.check(plans.current, args.provider):
        log.get("dialplan").warning("route cannot take calls", reason=idle)
    settings = _sip_settings(args, 0, engine)
    admission, timers = admission_from(
        engine,
        settings.max_calls,
        tuple(args.trusted_proxy),  # type: ignore[attr-defined]
    )
    _warn_open(admission)
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.enable()  # a crash inside PJSIP leaves a Python stack trace in the log
    carrier = SipCarrier(
        settings,  # type: ignore[arg-type]
        trunk=engine.outbound.trunk or "",
        trunks=engine.trunks,
        admission=admission,
        timers=timers,
    )
    worker = Worker(
        settings,  # type: ignore[arg-type]
        carrier=carrier,
        plans=plans,
        provider_override=args.provider,
        engine=engine,
        prewarm=not args.no_prewarm,
        node_workers=args.node_workers,
    )
    asyncio.run(serve_worker(worker))
    return EXIT_OK


def _warn_open(admission: Any) -> None:
    """Say at start who may call in when no trunk restricts it."""
    if admission.trunks:
        return
    if admission.limits.allow_any:
        log.get("sip").warning(
            "no trunk configured and sip.admission.allow_any is true: INVITEs from any "
            "address are answered"
        )
    else:
        log.get("sip").warning(
            "no trunk configured: INVITEs are taken from loopback and private networks only "
            "(configure trunks with allow lists, or sip.admission.allow_any: true)"
        )


def _engine_settings(args: argparse.Namespace) -> Any:
    from telephony_bot.config import load_engine_settings

    engine = load_engine_settings(args.config)
    admin = {k: v for k, v in (("port", args.admin_port), ("host", args.admin_host)) if v}
    if getattr(args, "no_admin", False):
        admin = {"port": None}
    if admin:
        engine = engine.model_copy(update={"admin": engine.admin.model_copy(update=admin)})
    if engine.admin.port is not None:
        from telephony_bot.admin.server import check_bind

        token = engine.admin.token.get_secret_value() if engine.admin.token else None
        check_bind(engine.admin.host, token)  # no open API beyond loopback
    tls = engine.sip.tls
    if tls is not None and tls.key_file.stat().st_mode & 0o077:
        log.get("config").warning(
            "the TLS private key is readable by other users: chmod 600 it",
            key_file=str(tls.key_file),
            mode=oct(tls.key_file.stat().st_mode & 0o777),
        )
    node = getattr(args, "mqtt_node", None)
    if node and engine.mqtt is not None:
        engine = engine.model_copy(update={"mqtt": engine.mqtt.model_copy(update={"node": node})})
    return engine


def _cmd_serve(args: argparse.Namespace) -> int:
    from telephony_bot import app, price_table
    from telephony_bot.supervisor import WorkerSpec, worker_argv

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    engine = _engine_settings(args)
    loaded = _load_plan(args, list(engine.trunks))
    # fail fast: bad plan, provider, tool, no route able to run; routes whose hosted model has
    # no key are said here and answer with on_error, the others (offline) take calls
    for idle in app.check(loaded, args.provider):
        log.get("dialplan").warning("route cannot take calls", reason=idle)
    _sip_settings(args, 0, engine)  # validate before spawning anything
    price_table.load(engine.prices.file)  # fail fast: a price table with mistakes
    front = args.front_door == "kamailio" or (args.front_door == "auto" and args.workers > 1)
    first_port = args.sip_port
    if front:
        first_port = args.worker_port if args.worker_port is not None else args.sip_port + 1
        if first_port <= args.sip_port < first_port + args.workers:
            raise ConfigError("--worker-port range overlaps the front door's --sip-port")
    elif args.worker_port is not None:
        first_port = args.worker_port
    _check_tls_ports(engine.sip.tls, args.sip_port, first_port, args.workers, front)
    rtp_range = 100
    front_address = _front_door_address(args) if front else args.front_door_address or ""
    if front_address:
        _check_trunks_behind_front_door(engine)
    specs = []
    for i in range(args.workers):
        port = first_port + i
        argv = [
            "--worker-id", str(i),
            "--sip-host", args.sip_host,
            "--sip-port", str(port),
            "--rtp-port", str(args.rtp_port + i * rtp_range),
            "--rtp-port-range", str(rtp_range),
            "--bridge-rate", str(args.bridge_rate),
            "--codecs", args.codecs,
            "--transports", args.transports,
            "--ring-ms", str(args.ring_ms),
            "--grace", str(args.grace),
            "--port-rate", str(args.port_rate),
            "--media-port", args.media_port,
            "--node-workers", str(args.workers),
        ]  # fmt: skip
        if engine.sip.tls is not None:
            argv += ["--tls-port", str(_worker_tls_port(engine.sip.tls.port, i, front))]
        if args.no_prewarm:
            argv.append("--no-prewarm")
        for flag, value in (
            ("--dialplan", args.dialplan),
            ("--provider", args.provider),
            ("--max-call-seconds", args.max_call_seconds),
            ("--echo-delay-ms", args.echo_delay_ms),
            ("--log-format", args.log_format),
            ("--log-level", args.log_level),
            ("--config", args.config),
        ):
            if value is not None:
                argv += [flag, str(value)]
        if engine.mqtt is not None and args.workers > 1:
            argv += ["--mqtt-node", f"{engine.mqtt.node}-w{i}"]  # a node per worker
        if front_address:
            # one registration per trunk, by worker 0, naming the front door as Contact: the
            # registrar's calls reach the front door and are spread over every worker
            argv += ["--front-door-address", front_address]
        if engine.trunks and (i > 0 or args.no_register):
            # worker 0 registers (without a front door: for itself alone)
            argv.append("--no-register")
        argv += _worker_admin_args(engine.admin.port, i)
        if front:  # the front door checked who calls; the worker takes its INVITEs
            argv += ["--trusted-proxy", _front_host(args.sip_host)]
        specs.append(WorkerSpec(index=i, argv=worker_argv(argv), sip_port=port))
    if app.needs_local_engine(loaded, args.provider) and not os.environ.get(
        "TELEPHONY_BOT_LOCAL_ENGINE"
    ):
        # Routes on the offline engine: run it here, once for all workers (models load once);
        # the workers started below inherit its address.
        port = args.local_engine_port
        os.environ["TELEPHONY_BOT_LOCAL_ENGINE"] = f"ws://127.0.0.1:{port}/v1"
        extra = ["--log-format", args.log_format] if args.log_format else []
        specs.append(
            WorkerSpec(
                index=len(specs),
                argv=worker_argv(["--port", str(port), *extra], "realtime-server"),
                sip_port=0,
                name="local engine",
                ready_port=port,  # the workers take calls once it answers
            )
        )
    background = []
    front_run_dir = None
    if front:
        door = _front_door(args, first_port, engine)
        specs.append(door.prepare())
        background.append(door.monitor)
        front_run_dir = door.cfg.run_dir
    return _supervise(specs, args.grace, engine, args.workers, background, front_run_dir)


def _check_tls_ports(tls: Any, public: int, first: int, workers: int, front: bool) -> None:
    """TLS listens on TCP: its ports must be none of the SIP ports (which listen on TCP too)."""
    if tls is None:
        return
    sip = set(range(first, first + workers)) | ({public} if front else set())
    ours = {tls.port} if front else set(range(tls.port, tls.port + workers))
    if sip & ours:
        raise ConfigError(
            f"sip.tls.port {tls.port}: TLS port(s) {sorted(ours)} overlap the SIP ports "
            f"{sorted(sip)}; pick another sip.tls.port or move the workers (--worker-port)"
        )


def _worker_tls_port(public: int, index: int, front: bool) -> int:
    """The TLS port of worker `index`: the public one for a lone worker, consecutive ones
    when each worker takes calls on its own ports, none behind the front door (TLS ends
    there)."""
    return 0 if front else public + index


def _front_door_address(args: argparse.Namespace) -> str:
    """host:port trunks reach the front door at (its listening address; 0.0.0.0: 127.0.0.1)."""
    return f"{_front_host(args.sip_host)}:{args.sip_port}"


def _check_trunks_behind_front_door(engine: Any) -> None:
    """Behind the front door worker 0's REGISTERs leave through Kamailio. Kamailio 5.6's TLS
    client checks the CA of a server's certificate but not that it names the server (measured:
    a certificate of the same CA for another address passes), so a REGISTER relayed over TLS
    would not get the check `sip.tls.verify_server` promises: refused."""
    from telephony_bot.trunk_config import registering

    for name, reg in registering(engine.trunks).items():
        if reg.transport == "tls":
            raise ConfigError(
                f"trunks.{name}.register.transport: tls is not relayed by the front door "
                "(Kamailio's TLS client does not check that the registrar's certificate names "
                "the registrar, which sip.tls.verify_server promises): register over udp or "
                "tcp behind it, or run one worker (--workers 1), which registers over TLS itself"
            )


def _worker_admin_args(admin_port: int | None, index: int) -> list[str]:
    """A worker under serve: its internal admin API on loopback, or none at all."""
    if admin_port is None:
        return ["--no-admin"]
    from telephony_bot.admin.cluster import worker_admin_port
    from telephony_bot.admin.supervisor_app import WORKER_ADMIN_HOST

    port = worker_admin_port(admin_port, index)
    return ["--admin-host", WORKER_ADMIN_HOST, "--admin-port", str(port)]


def _supervise(
    specs: list[Any],
    grace: float,
    engine: Any,
    workers: int,
    background: list[Any],
    front_run_dir: Any = None,
) -> int:
    import shutil
    import tempfile

    from telephony_bot.events.metrics import MULTIPROC_ENV
    from telephony_bot.supervisor import Supervisor

    # One fresh metrics directory for this run's workers: the admin API sums their files.
    metrics_dir = tempfile.mkdtemp(prefix="telephony-bot-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    admin = None
    a = engine.admin
    if a.port is not None:
        from telephony_bot.admin.supervisor_app import SupervisorAdmin

        token = a.token.get_secret_value() if a.token is not None else None
        admin = SupervisorAdmin(
            a.host, a.port, token, list(range(workers)), engine.cdr.path, front_run_dir
        )
    try:
        sup = Supervisor(specs, grace_seconds=grace, admin=admin, background=background)
        return asyncio.run(sup.run())
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _front_host(sip_host: str) -> str:
    """The address the front door reaches the workers on (and they see it come from)."""
    return "127.0.0.1" if sip_host in ("0.0.0.0", "::") else sip_host


def _front_door(args: argparse.Namespace, first_port: int, engine: Any) -> Any:
    from pathlib import Path

    from telephony_bot.frontdoor import trust
    from telephony_bot.frontdoor.render import FrontDoorConfig, TrunkRelay, WorkerAddress
    from telephony_bot.frontdoor.service import FrontDoor, default_run_dir
    from telephony_bot.trunk_config import registering

    host = _front_host(args.sip_host)
    run_dir = Path(args.run_dir).resolve() if args.run_dir else default_run_dir(args.sip_port)
    cfg = FrontDoorConfig(
        listen_host=args.sip_host,
        listen_port=args.sip_port,
        workers=tuple(WorkerAddress(host, first_port + i) for i in range(args.workers)),
        run_dir=run_dir,
        transports=_transports(args.transports),
        tls=_front_door_tls(engine.sip.tls),
        trunks=tuple(TrunkRelay.of(name, reg) for name, reg in registering(engine.trunks).items()),
        trust=trust.from_settings(
            engine.trunks, engine.sip.admission, args.workers, _front_door_secrets(engine)
        ),
    )
    cfg.check()  # before any process starts
    return FrontDoor(cfg)


def _front_door_tls(tls: Any) -> Any:
    """The front door's TLS listener from the engine config's `sip.tls` (None: none)."""
    if tls is None:
        return None
    from telephony_bot.frontdoor.render import FrontDoorTls

    return FrontDoorTls(tls.port, tls.cert_file, tls.key_file, tls.ca_file, tls.verify_peer)


def _front_door_secrets(engine: Any) -> dict[str, str]:
    """Trunk passwords for Kamailio, which reads them from its environment (`$env(...)`):
    one kept in a file goes into a variable of serve's own environment, which Kamailio
    inherits; nothing is written to the front door's files. ConfigError when one is unset."""
    from telephony_bot.trunk_config import trunk_rules

    names: dict[str, str] = {}
    rules = {r.name: r for r in trunk_rules(engine.trunks)}  # resolves every secret now
    for name, t in engine.trunks.items():
        auth = t.auth
        if auth is None or auth.password_env:
            continue
        var = (
            "TELEPHONY_BOT_FRONTDOOR_PW_" + "".join(c if c.isalnum() else "_" for c in name)
        ).upper()
        cred = rules[name].auth
        assert cred is not None
        os.environ[var] = cred.password
        names[name] = var
    return names


def _cmd_dial(args: argparse.Namespace) -> int:
    from telephony_bot.sip.dial import DialOptions, dial

    report = dial(
        DialOptions(
            uri=args.uri,
            play=args.play,
            play_at=args.play_at,
            record=args.record,
            duration=args.duration,
            dtmf=args.dtmf,
            dtmf_at=args.dtmf_at,
            report=args.report,
            codec=args.codec,
            rate=args.rate,
            from_user=args.from_user,
            local_port=args.local_port,
            rtp_port=args.rtp_port,
            timeout=args.timeout,
            headers=tuple(args.header),
            say=tuple(args.say),
            turn_gap=args.turn_gap,
            refuse_transfer=args.refuse_transfer,
            srtp=args.srtp,
            tls_ca=args.tls_ca,
            tls_verify=not args.tls_no_verify,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            local_host=args.local_host,
            auth_user=args.auth_user,
            auth_password=os.environ.get("TELEPHONY_BOT_DIAL_PASSWORD", ""),
        )
    )
    status = "answered" if report["answered"] else f"failed ({report['sip_status']})"
    secure = "SRTP" if report["srtp"] else "RTP"
    print(
        f"{args.uri}: {status}, {report['transport'].upper()}, {secure}, codec "
        f"{report['codec'] or '-'}, setup {report['setup_ms']} ms, heard {report['heard_ms']} "
        "ms of audio"
    )
    tls = report.get("tls")
    if tls and not tls["verified"]:
        print(f"TLS: the server's certificate failed the check: {'; '.join(tls['verify_errors'])}")
    return EXIT_OK if report["answered"] else EXIT_RUNTIME


def main(argv: Sequence[str] | None = None, *, hard_exit: bool = False) -> int:
    """Run a command; `hard_exit` (the real entry point) skips finalization after PJSIP."""
    parser = build_parser()
    args = parser.parse_args(argv)
    fields = {"worker": args.worker_id} if args.command == "worker" else {}
    log.setup(getattr(args, "log_format", None), getattr(args, "log_level", None), **fields)
    handlers = {
        "serve": _cmd_serve,
        "worker": _cmd_worker,
        "dial": _cmd_dial,
        "dialplan": _cmd_dialplan,
        "realtime-server": _cmd_realtime_server,
        "say": _cmd_say,
        "demo": _cmd_demo,
        "frontdoor": _cmd_frontdoor,
    }
    try:
        code = handlers[args.command](args)
    except ConfigError as exc:
        print(f"telephony-bot {args.command}: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except TelephonyBotError as exc:
        print(f"telephony-bot {args.command}: {exc}", file=sys.stderr)
        code = EXIT_RUNTIME
    except KeyboardInterrupt:
        code = EXIT_OK
    if hard_exit and args.command in ("worker", "dial") and "pjsua2" in sys.modules:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End a process that ran PJSIP without Python's interpreter finalization.

    PJSIP has been destroyed cleanly by now. But the threads it created called into Python
    (SWIG directors), and the garbage collector's final pass at interpreter exit can then
    visit a frame those threads left behind and crash (seen here: SIGSEGV in
    `Py_FinalizeEx` → `gc_collect` on about half of clean shutdowns). Everything worth
    keeping is flushed first, so skipping finalization loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(hard_exit=True))


if __name__ == "__main__":
    run()
