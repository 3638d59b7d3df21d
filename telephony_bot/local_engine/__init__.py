"""The offline engine: an OpenAI-Realtime-compatible server of its own (its own process, started by
`telephony-bot realtime-server`), which a worker reaches like OpenAI through the Realtime client.

* `server`: the Realtime server (on the shared core `telephony_bot.realtime.server`) whose
  replies come from a `pipeline.Pipeline`; `work_pool`: the ASR/TTS threads, earliest deadline
  first.
* `pipeline`: what the server needs (detector, recognizer, synthesizer, brain) and the actions
  a brain returns; `engine`: builds the pipeline and serves it.
* `brain`, `slots`: the flow brain (intents, slots, templates); `chat_brain`: an LLM brain.
* `speech`: offline speech, Whisper ASR, piper TTS and a two-stage turn VAD. Everything runs
  on the CPU from models shipped inside pip packages (no API key, no network, nothing
  downloaded at run time); see `speech` for the classes and the packages they need.
"""
