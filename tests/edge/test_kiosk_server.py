"""The kiosk page's server and preview without a browser: loopback only, the security headers,
the event stream, the preview's rate, size and memory-only life, and the ``[kiosk]`` table."""
from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from appliance.config import load_config
from appliance.edge.kiosk.preview import Preview
from appliance.edge.kiosk.screen import WELCOME_TEXT, FaceBox, ScreenState, State
from appliance.edge.kiosk.server import CSP, KioskDisplay, KioskServer, door_notice, kiosk_display
from appliance.errors import ApplianceError, ErrorCode


@pytest.fixture
def served():
    display = KioskDisplay("zh-CN", Preview(fps=10.0, width=160), door_notice("zh_CN"))
    server = KioskServer(display, 0).start()
    yield server
    server.stop()


def get(url: str, host: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_only_the_loopback_address_is_served():
    display = KioskDisplay("en", Preview(0.0, 480), door_notice("en"))
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(ApplianceError, match="127.0.0.1 only") as refused:
            KioskServer(display, 0, host=host)
        assert refused.value.code is ErrorCode.CONFIG_INVALID


def test_a_port_in_use_is_a_clear_configuration_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ApplianceError, match=r"\[kiosk\] port"):
            KioskServer(KioskDisplay("en", Preview(0.0, 480), door_notice("en")), taken.getsockname()[1])


def test_the_page_in_chinese_with_csp_and_no_inline_script(served):
    status, headers, body = get(served.url)
    page = body.decode("utf-8")
    assert status == 200 and headers["Content-Security-Policy"] == CSP and "script-src 'self'" in CSP
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
    assert '<html lang="zh-CN">' in page and "个人信息处理告知" in page and "请刷卡或输入密码" in page
    assert "<script>" not in page and 'src="/kiosk.js"' in page and "face-door-v1" in page
    for asset, kind in (("kiosk.css", "text/css"), ("kiosk.js", "text/javascript")):
        status, headers, _ = get(served.url + asset)
        assert status == 200 and headers["Content-Type"].startswith(kind)


def test_a_request_for_another_host_is_refused(served):
    """A page that rebinds its own name to 127.0.0.1 cannot read the screen or the preview."""
    status, _, _ = get(served.url, host="attacker.example")
    assert status == 421
    assert get(served.url, host=f"localhost:{served.port}")[0] == 200


def test_the_stream_sends_the_screen_then_each_change_then_preview_frames(served):
    received: list[tuple[str, dict]] = []
    done = threading.Event()

    def listen():
        with urllib.request.urlopen(served.url + "events", timeout=5) as stream:
            event = ""
            for line in stream:
                text = line.decode("utf-8").rstrip("\n")
                if text.startswith("event: "):
                    event = text[7:]
                elif text.startswith("data: "):
                    received.append((event, json.loads(text[6:])))
                    if len(received) == 3:
                        done.set()
                        return

    threading.Thread(target=listen, daemon=True).start()
    assert _wait(lambda: len(received) >= 1)
    served.display.show(ScreenState.of(State.ACCEPTED, WELCOME_TEXT, name="张*"))
    assert _wait(lambda: len(received) >= 2)
    served.display.preview(np.full((480, 640, 3), 90, np.uint8), FaceBox(0.25, 0.2, 0.3, 0.4))
    assert done.wait(5)
    assert received[0] == ("screen", {**received[0][1], "state": "idle", "message": "请正对摄像头"})
    assert received[1][1] | {"at": 0} == {"state": "accepted", "at": 0, "headline": "验证通过,请通行",
                                          "message": "欢迎您,张*", "footer": ""}
    assert received[2] == ("frame", {"seq": 1, "face": {"left": 0.25, "top": 0.2, "width": 0.3, "height": 0.4}})
    status, headers, jpeg = get(served.url + "preview.jpg?n=1")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    import cv2

    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)  # downscaled


def _wait(predicate, timeout: float = 5.0) -> bool:
    from polling import wait_for

    return wait_for(predicate, timeout)


def test_the_preview_keeps_at_most_fps_frames_a_second_and_only_the_last():
    clock = [0.0]
    preview = Preview(fps=4.0, width=320, clock=lambda: clock[0])
    frame = np.zeros((480, 640, 3), np.uint8)
    kept = []
    for _ in range(20):  # 20 frames in one second
        kept.append(preview.offer(frame, None))
        clock[0] += 0.05
    assert sum(kept) == 4 and preview.seq == 4
    assert preview.latest().image.shape == (240, 320, 3) and preview.latest().image is not frame
    small = np.zeros((100, 120, 3), np.uint8)
    clock[0] += 1
    preview.offer(small, None)
    assert preview.latest().image.shape == (100, 120, 3)  # never enlarged
    preview.clear()
    assert preview.latest() is None


def test_a_preview_at_zero_fps_is_off_and_keeps_nothing(tmp_path):
    display = KioskDisplay("en", Preview(0.0, 480), door_notice("en"))
    server = KioskServer(display, 0).start()
    try:
        display.preview(np.zeros((480, 640, 3), np.uint8), None)
        assert display.preview_frames.latest() is None and get(server.url + "preview.jpg")[0] == 404
        assert "Camera preview off" in get(server.url)[2].decode("utf-8")
    finally:
        server.stop()


def test_the_kiosk_table_reads_languages_and_refuses_what_it_cannot_serve(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text('[kiosk]\nenabled = true\nlanguage = "zh-CN"\npreview_fps = 2.5\npreview_width = 320\n',
                    encoding="utf-8")
    kiosk = load_config(path).kiosk
    assert (kiosk.enabled, kiosk.language, kiosk.preview_fps, kiosk.preview_width) == (True, "zh_CN", 2.5, 320)
    assert kiosk_display(kiosk).notice.language == "zh-CN"
    for bad, key in (('language = "fr"', "language"), ("port = 80", "port"), ("preview_fps = 60.0", "preview_fps"),
                     ("preview_width = 4000", "preview_width")):
        path.write_text(f"[kiosk]\n{bad}\n", encoding="utf-8")
        with pytest.raises(ApplianceError, match=f"kiosk.{key}"):
            load_config(path)
