"""Shared helpers for the benchmarks: synthetic documents, the emulator as a subprocess, machine facts.

Why a subprocess emulator: the benchmark measures the client; running the emulator in the same
interpreter would make both share one GIL and blur whose time is whose.
"""

from __future__ import annotations

import io
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request

from PIL import Image, ImageDraw, ImageFont

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> str:
    cpus = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return f"{platform.machine()} {cpus} cpu {mem:.0f} GiB, Python {platform.python_version()}"


def small_document(i: int, size=(400, 200)) -> bytes:
    """A distinct small document image (text with its index), PNG."""
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), f"Document {i}", fill="black")
    d.text((10, 40), f"Invoice no. {100000 + i}  total {i * 3.17:.2f}", fill="black")
    d.rectangle((5, 5, size[0] - 5, size[1] - 5), outline=(i % 200, 40, 90))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def scan_jpeg(width=4000, height=3000, quality=92, seed=0) -> bytes:
    """A 12-MP colour 'scan': off-white paper, lines of text, a colour stamp, sensor-like noise; JPEG q92."""
    noise = Image.effect_noise((width // 2, height // 2), 24).resize((width, height))
    paper = Image.merge("RGB", [Image.eval(noise, lambda v, o=o: min(255, 200 + v // 5 + o)) for o in (12, 8, 0)])
    d = ImageDraw.Draw(paper)
    try:
        font = ImageFont.load_default(size=48)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for row in range(40):
        y = 150 + row * 68
        d.text((200, y), f"{seed:03d}-{row:02d} The quick brown fox jumps over the lazy dog 0123456789 发票",
               fill=(20, 20, 30), font=font)
    d.ellipse((width - 900, height - 900, width - 300, height - 300), outline=(200, 30, 30), width=18)
    buf = io.BytesIO()
    paper.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorProcess:
    """``python -m qwenocr_emulator`` (the qwenocr-emulator distribution) on a free loopback port, for a with-block."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EmulatorProcess:
        cmd = [sys.executable, "-m", "qwenocr_emulator", "--host", "127.0.0.1",
               "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("emulator did not start")

    def stats(self) -> dict:
        import json

        with urllib.request.urlopen(self.base_url + "/emulator/stats", timeout=5) as r:
            return json.loads(r.read())

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
