"""A pjsua2 AudioMediaPort that copies 20 ms frames into and out of a MediaBridge.

These two callbacks run on pjmedia's clock thread every 20 ms per call: they copy bytes
and nothing else (no logging, no allocation beyond the frame, never block). An exception
here would cross into C++, so each callback catches everything and counts it.
"""

from __future__ import annotations

from typing import Any

import pjsua2 as pj

from telephony_bot.media.bridge import MediaBridge
from telephony_bot.sip.framebuf import FrameBuffer

_AUDIO = pj.PJMEDIA_FRAME_TYPE_AUDIO
_NONE = pj.PJMEDIA_FRAME_TYPE_NONE


def audio_format(clock_rate: int, frame_ms: int = 20) -> Any:
    fmt = pj.MediaFormatAudio()
    fmt.type = pj.PJMEDIA_TYPE_AUDIO
    fmt.clockRate = clock_rate
    fmt.channelCount = 1
    fmt.bitsPerSample = 16
    fmt.frameTimeUsec = frame_ms * 1000
    return fmt


class BridgePort(pj.AudioMediaPort):  # type: ignore[misc]
    def __init__(self, bridge: MediaBridge, frames: FrameBuffer) -> None:
        super().__init__()
        self.bridge = bridge
        self._read = frames.read
        self._write = frames.write
        self._silence = b"\x00" * bridge.frame_bytes
        self.callback_errors = 0

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 - pjsua2 name
        try:
            if frame.type == _AUDIO:
                data = self._read(frame.buf)
                self.bridge.push_caller_frame(data if data else self._silence)
            else:
                self.bridge.push_caller_frame(self._silence)
        except Exception:  # noqa: BLE001 - never raise into pjmedia
            self._count_error()

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802 - pjsua2 name
        try:
            pcm = self.bridge.pull_playout_frame()
            if pcm is None:
                frame.type = _NONE
                frame.size = 0
                return
            self._write(frame.buf, pcm)
            frame.size = len(pcm)
            frame.type = _AUDIO
        except Exception:  # noqa: BLE001 - never raise into pjmedia
            self._count_error()
            frame.type = _NONE
            frame.size = 0

    def _count_error(self) -> None:
        # Attributes vanish while SWIG tears the object down; a late callback then lands here.
        try:
            self.callback_errors += 1
        except Exception:  # noqa: BLE001
            pass
