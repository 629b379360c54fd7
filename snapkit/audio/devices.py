"""Finding the microphone: list input devices and turn a user's "2" or "USB" into a PortAudio device."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from snapkit.errors import DeviceError


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_sample_rate_hz: int
    host_api: str
    is_default: bool


def sounddevice_module() -> ModuleType:
    """Import sounddevice, turning a missing PortAudio library into one clear sentence."""
    try:
        import sounddevice
    except OSError:
        raise DeviceError(
            "PortAudio is not installed, so no microphone can be opened; install it "
            "(Debian/Ubuntu: apt install libportaudio2, macOS: brew install portaudio)."
        ) from None
    return sounddevice


def rescan_devices() -> None:
    """Make PortAudio look for devices again, e.g. a microphone plugged back in after it started (its list is
    fixed when it starts). Only call it while no stream is open."""
    sd = sounddevice_module()
    terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if callable(terminate) and callable(initialize):
        try:
            terminate()
            initialize()
        except sd.PortAudioError as err:
            raise DeviceError(f"PortAudio could not look for audio devices again ({err}).") from None


def list_input_devices() -> list[InputDevice]:
    """Every device that can record, in PortAudio's order."""
    sd = sounddevice_module()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except sd.PortAudioError as err:
        raise DeviceError(f"PortAudio could not list audio devices ({err}); check your sound system.") from None
    found = []
    for index, dev in enumerate(devices):
        if dev["max_input_channels"] <= 0:
            continue
        found.append(
            InputDevice(
                index=index,
                name=str(dev["name"]),
                channels=int(dev["max_input_channels"]),
                default_sample_rate_hz=int(dev["default_samplerate"]),
                host_api=str(apis[dev["hostapi"]]["name"]),
                is_default=index == default_in,
            )
        )
    return found


def resolve_input_device(spec: str | int | None) -> InputDevice:
    """The input device a user named: ``None`` for the default, a number for an index, or (part of) a name."""
    devices = list_input_devices()
    if not devices:
        raise DeviceError("No audio input device was found; plug in a microphone or check your sound settings.")
    if spec is None or spec == "":
        for dev in devices:
            if dev.is_default:
                return dev
        return devices[0]
    text = str(spec).strip()
    if text.isdigit():
        for dev in devices:
            if dev.index == int(text):
                return dev
        raise DeviceError(f"--device {text}: no input device has that number; run `snapkit devices` to list them.")
    exact = [d for d in devices if d.name.lower() == text.lower()]
    partial = [d for d in devices if text.lower() in d.name.lower()]
    matches = exact or partial
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"--device {text!r}: no input device has that name; run `snapkit devices` to list them.")
    names = ", ".join(f"{d.index} ({d.name})" for d in matches)
    raise DeviceError(f"--device {text!r} matches several input devices: {names}; give its number instead.")
