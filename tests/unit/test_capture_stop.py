"""stop_capture lets tcpdump catch up before SIGINT: the capture file must be quiet first."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from ipseclab.lab import capture
from ipseclab.lab.capture import QUIET, Capture, stop_capture


def test_the_capture_is_stopped_only_once_its_file_stopped_growing(tmp_path: Path, monkeypatch):
    """A tcpdump still writing (a loaded host: the cell's last frames in the kernel's buffer) is not stopped
    while it writes; once the file is quiet for QUIET seconds, it is."""
    pcap = tmp_path / "l.pcap"
    pcap.write_bytes(b"h")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    stopped: list[float] = []
    real_stop = capture.stop
    monkeypatch.setattr(capture, "stop", lambda p, **kw: (stopped.append(time.monotonic()), real_stop(p, **kw)))
    last_write: list[float] = []

    def writer() -> None:
        for _ in range(10):  # 0.3 s of frames, 30 ms apart
            with pcap.open("ab") as f:
                f.write(b"frame")
            last_write.append(time.monotonic())
            time.sleep(0.03)

    t = threading.Thread(target=writer)
    t.start()
    stop_capture(Capture(None, pcap, proc))  # type: ignore[arg-type]
    t.join()
    assert proc.poll() is not None, "expected tcpdump's stand-in to be stopped"
    assert pcap.stat().st_size == 1 + 10 * 5
    assert stopped and stopped[0] >= last_write[-1] + QUIET * 0.9, (
        f"stopped {stopped[0] - last_write[-1]:.3f} s after the last write, before the file was quiet")
