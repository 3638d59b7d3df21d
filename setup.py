"""The compiled parts (see each source's header): pjmedia ports whose frame callbacks run in
C, a PJSIP module that admits or refuses INVITEs before pjsua sees them, and per-frame DSP
kernels (the resampler's inner loop, frame levels)."""

from setuptools import Extension, setup

FLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "telephony_bot.native._mediaport",
            sources=["telephony_bot/native/mediaport.c"],
            extra_compile_args=FLAGS,
            libraries=["dl"],
        ),
        Extension(
            "telephony_bot.native._sipgate",
            sources=["telephony_bot/native/sipgate.c"],
            extra_compile_args=FLAGS,
            libraries=["dl"],
        ),
        Extension(
            "telephony_bot.native._dsp",
            sources=["telephony_bot/native/dsp.c"],
            extra_compile_args=FLAGS,
            libraries=["m"],
        ),
    ]
)
