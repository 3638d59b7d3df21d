"""Offline speech for the local engine: Whisper ASR, piper TTS and a two-stage turn VAD.

Everything runs on the CPU from models shipped inside pip packages (no API key, no network,
nothing downloaded at run time); see `speech` for the classes and the packages they need.
"""
